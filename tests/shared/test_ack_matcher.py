"""AckMatcher, the pure part of ack matching (the broker-backed wrap-around test is test_mqtt_acks.py)."""

from __future__ import annotations

import threading

from shared.process.counters import Counters
from shared.transport.ack_matcher import NOT_FOUND, AckMatcher


def test_an_ack_before_its_packet_is_registered_is_handed_to_that_packet():
    m = AckMatcher(Counters())
    start = m.begin()
    assert m.puback(7, 0) is NOT_FOUND  # paho called on_publish before publish() returned
    assert m.expect_puback(7, start, lambda rc: None) == 0


def test_a_parked_ack_of_an_earlier_packet_with_the_same_id_is_stale_not_taken():
    c = Counters()
    m = AckMatcher(c)
    m.begin()
    assert m.puback(7, 0) is NOT_FOUND  # e.g. the PUBACK of a packet nobody registered
    later = m.begin()  # a new PUBLISH after the id wrapped around
    got: list[int] = []
    cb = got.append
    assert m.expect_puback(7, later, cb) is NOT_FOUND
    assert c.get("mqtt.stale_acks") == 1
    assert m.puback(7, 0x87) is cb  # only its own PUBACK reaches it


def test_kinds_do_not_mix_and_a_suback_wakes_its_waiter():
    m = AckMatcher(Counters())
    start = m.begin()
    m.puback(3, 0)  # a PUBACK with id 3 cannot be a SUBSCRIBE's answer
    waiter = (threading.Event(), [])
    assert m.expect_suback(3, start, waiter) is NOT_FOUND
    assert m.suback(3, [1]) == waiter
    m.forget_suback(3, waiter)  # already gone: harmless


def test_a_lost_connection_drops_parked_acks_and_subscribes_but_keeps_publishes():
    m = AckMatcher(Counters())
    start = m.begin()
    cb = lambda rc: None  # noqa: E731
    assert m.expect_puback(1, start, cb) is NOT_FOUND
    m.expect_suback(2, m.begin(), None)
    m.puback(9, 0)
    m.connection_lost()
    assert m.expect_puback(9, start, None) is NOT_FOUND  # the parked ack went with the connection
    assert m.suback(2, [0]) is None  # unknown now: parked, not matched
    assert m.puback(1, 0) is cb  # paho resends the PUBLISH; its PUBACK still matches


def test_parked_acks_are_bounded():
    c = Counters()
    m = AckMatcher(c)
    for mid in range(1, 1100):
        m.puback(mid, 0)
    assert c.get("mqtt.stale_acks") == 1099 - 1024
