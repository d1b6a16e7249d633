"""Reaching the broker: the MQTT 5 client and its fast receive path, PUBACK matching, the broker
runner for tests and `lepton up`, and what a client tells a person about its connection.

Imports shared.protocol, shared.security and shared.process.
"""
