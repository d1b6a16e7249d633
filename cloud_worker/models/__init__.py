"""The nets and how they are fit: edge and cloud models per task kind, MiniRocket, training loops,
augmentation and temperature calibration. Pure compute, no MQTT.

Imports shared, lepton_tasks, cloud_worker.config and cloud_worker.registry (torch bytes) only.
"""
