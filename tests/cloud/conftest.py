"""Fixtures for the cloud worker: one signing key pair and one bootstrapped registry per
session (training v1 costs seconds), copied into each test that changes it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cloud_worker.config import WorkerConfig
from cloud_worker.learning.learner import Learner
from cloud_worker.registry import Registry
from cloud_worker.releasing.keys import init_keys
from cloud_worker.service import load_signer
from lepton_tasks import load_task
from shared.protocol.topics import Topics
from shared.transport.broker import Broker

# Tiny models: one torch thread is as fast as two here, and does not fight the broker and
# the clients for the CI box's two cores (oversubscribed torch threads stall badly).
torch.set_num_threads(1)

# Small but real: what fits the suite's budget on 2 cores.
FAST = {"training": {"bootstrap_epochs": 60, "cloud_epochs": 40, "head_epochs": 40, "whole_epochs": 10},
        "status_interval_s": 0.5}


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    init_keys(d)
    return d


def make_config(tmp: Path, keydir: Path, broker: Broker | None = None, topics: Topics | None = None,
                **over: object) -> WorkerConfig:
    data: dict = {"registry": str(tmp / "registry"), "signing_key": str(keydir / "signing.key"),
                  "public_key": str(keydir / "signing.pub"), **FAST}
    if broker is not None:
        data["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
    if topics is not None:
        data["root"] = topics.root
    for k, v in over.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
    return WorkerConfig.model_validate(data)


@pytest.fixture(scope="session")
def template_registry(tmp_path_factory: pytest.TempPathFactory, keydir: Path) -> Path:
    """digits v1 (bootstrap) registered offline, under the default topic root."""
    tmp = tmp_path_factory.mktemp("template")
    cfg = make_config(tmp, keydir)
    lr = Learner(load_task("digits"), cfg, Registry(cfg.registry), load_signer(cfg), Topics(cfg.root),
                 device=torch.device("cpu"))
    lr.bootstrap()
    lr.ensure_cloud()  # what the worker's learner thread does next
    lr.close()
    return Path(cfg.registry)


@pytest.fixture
def registry_copy(template_registry: Path, tmp_path: Path) -> Callable[[], Path]:
    def make() -> Path:
        dst = tmp_path / "registry"
        if not dst.exists():
            shutil.copytree(template_registry, dst)
        return dst

    return make
