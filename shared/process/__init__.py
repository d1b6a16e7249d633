"""Process plumbing every role runs on: service lifecycle (start/stop/join, SIGTERM), systemd notify,
config loading, counters, bounded queues, quiet pipes and the CLI help format.

Imports nothing of Lepton's.
"""
