"""Lepton's common protocol package: topics, schemas, tensor codec, MQTT client, lifecycle."""

__version__ = "0.1.0"
