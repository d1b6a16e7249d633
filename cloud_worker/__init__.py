"""Lepton cloud worker: answers escalations, learns from fused batches, publishes signed ONNX models.

PyTorch lives here and only here (see docs/WORKER.md)."""
