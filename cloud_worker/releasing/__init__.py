"""Releasing a model version: ONNX export and parity, signing keys, the registry on disk, and the
publisher that puts artifact and signed manifest on the broker.

Imports shared, lepton_tasks, cloud_worker.models and config.
"""
