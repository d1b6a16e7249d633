"""LEPTON_TEST_BROKER=testcontainers (tests/conftest.py): the session broker really is the broker
image in a container, published on loopback only. scripts/test-deploy.sh runs every
broker-backed test once in that mode; in the default mode this test skips."""

from __future__ import annotations

import threading

import pytest

from shared.protocol.topics import Filter
from tests import conftest as root_conftest

pytestmark = pytest.mark.broker


def test_the_session_broker_is_a_container_on_loopback(broker, mqtt_factory, topics) -> None:
    if root_conftest.BROKER_MODE != "testcontainers":
        pytest.skip("runs in LEPTON_TEST_BROKER=testcontainers mode only (scripts/test-deploy.sh)")
    wrapped = broker.c.get_wrapped_container()
    wrapped.reload()
    got = threading.Event()
    sub = mqtt_factory()
    sub.subscribe_and_wait(Filter(str(topics.status("cam-1"))), 1, lambda m: got.set())

    mqtt_factory().publish(topics.status("cam-1"), b"{}", qos=1)

    assert got.wait(10)
    assert wrapped.status == "running"
    assert root_conftest.BROKER_IMAGE.split("/")[-1] in {t.split("/")[-1] for t in wrapped.image.tags}, \
        wrapped.image.tags
    assert wrapped.ports["1883/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(broker.port)}]
