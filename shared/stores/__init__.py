"""Local persistence that outlives a process: the label outbox and its SQLite journal.

Imports shared.protocol, shared.transport and shared.process.
"""
