"""Staged rollout: release plans, the field counts per arm, the pure judge, the manager of stages,
operator commands and the wiring to the broker.

Imports shared, cloud_worker.releasing, cloud_worker.answering and config.
"""
