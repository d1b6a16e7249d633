"""Continual learning for one task: what reaches the learner, its buffers and raw store, triggers and the
gate, holdout scoring, candidates distilled from the cloud, the cloud model's training thread.

Imports shared, lepton_tasks, cloud_worker.models, cloud_worker.releasing and config.
"""
