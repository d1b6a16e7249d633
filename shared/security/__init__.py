"""Who may do what, and proof of it: broker ACLs, Ed25519 signing, signed envelopes, the ONNX guard,
redaction of secrets, and where secrets live on disk.

Imports shared.protocol and shared.process only.
"""
