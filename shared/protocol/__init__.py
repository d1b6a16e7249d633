"""The wire: every topic, payload schema and binary container, and the one decoder from topic to message.

Owns topics, JSON schemas, the tensor codec, containers, raw samples, strict JSON, dedup by (device, boot, seq),
and the generator of docs/PROTOCOL.md. Imports shared.process only.
"""
