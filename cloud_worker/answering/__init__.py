"""Answering escalations: request messages in, the cloud's replies and typed rejections out.

Imports shared, lepton_tasks and cloud_worker.models / config.
"""
