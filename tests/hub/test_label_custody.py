"""Labels under custody and corrections at the bridge, against a real mosquitto.

A keyed label message (publisher, boot, seq) gets custody on hub/custody/{publisher} only once the
fused batch carrying its item is held by a worker (BatchAck), copies are dropped and custody said
again, and a correction (supersedes) is forwarded unchanged to hub/relabel/{task}."""

from __future__ import annotations

import time

import pytest

from shared.protocol import schemas
from shared.protocol.containers import FusedBatch
from shared.stores.label_outbox import LabelOutbox, LabelSender

from .helpers import Collector, bridge_config, feat, start_bridge, wait_until

pytestmark = pytest.mark.broker


def _labels(pairs, **kw) -> schemas.Labels:
    return schemas.Labels(device="cam-1", stream="front", task="digits",
                          items=[schemas.LabelItem(sample=s, label=y) for s, y in pairs], ts=time.time(), **kw)


def _ack(worker, topics, cfg, b, batches: Collector) -> None:
    for m in batches.matching():
        fb = FusedBatch.decode(m.payload)
        ack = schemas.BatchAck(bridge=cfg.id, boot=b.boot, task="digits", ranges=[(fb.seq, fb.seq)], worker="w",
                               ts=time.time())
        worker.publish(topics.hub_ack(cfg.id), schemas.dumps(ack), qos=1)


def test_label_custody_waits_for_the_worker_and_copies_are_dropped(broker, topics, mqtt_factory, bridges):
    # Prepare: a labeller with an outbox, a bridge, a stand-in worker that collects batches
    pub, worker, lab = mqtt_factory(), mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics, fusion=dict(label_wait=0.3, batch_age=0.1),
                        custody=dict(interval_s=0.2))
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    batches = Collector(worker).add(topics.hub_batches())
    sender = LabelSender(lab, topics, LabelOutbox("console_t", timeout_s=0.5))
    time.sleep(0.2)  # the custody subscription is in place

    # Execute: a row, then its label under custody
    pub.publish(topics.feat("cam-1", "front"), feat("cam-1", 1, [10, 11]), qos=1)
    stamped = sender.send(_labels([(10, 4)]))
    got = wait_until(lambda: any(4 in FusedBatch.decode(m.payload).label.tolist() for m in batches.matching()), 10)
    time.sleep(0.6)
    kept_before_ack = len(sender.outbox)
    sender.pump()  # no custody yet: it goes out again, and the bridge drops the copy
    dup = wait_until(lambda: (b.counters.get("duplicate.label") or 0) >= 1, 5)
    _ack(worker, topics, cfg, b, batches)
    released = wait_until(lambda: len(sender.outbox) == 0, 10)

    # Assert
    assert stamped.publisher == "console_t" and stamped.seq == 0
    assert got and kept_before_ack == 1, "custody must wait until a worker holds the batch"
    assert dup and released
    c, _ = b.snapshot()
    assert c["label_custody.finished"] == 1 and c.get("label_custody.sent", 0) >= 1


def test_a_correction_is_forwarded_to_every_worker_and_takes_custody_on_puback(broker, topics, mqtt_factory,
                                                                               bridges):
    # Prepare
    pub, worker, lab = mqtt_factory(), mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics, fusion=dict(label_wait=0.2, batch_age=0.1), custody=dict(interval_s=0.2))
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    batches = Collector(worker).add(topics.hub_batches())
    relabels = Collector(worker).add(topics.hub_relabels())
    sender = LabelSender(lab, topics, LabelOutbox("console_t", timeout_s=30))
    time.sleep(0.2)

    # Execute: the row goes out labelled 3; a person corrects it to 5, then retracts sample 21's label
    pub.publish(topics.feat("cam-1", "front"), feat("cam-1", 1, [20, 21]), qos=1)
    pub.publish(topics.label("cam-1", "front"), schemas.dumps(_labels([(20, 3), (21, 1)])), qos=1)
    assert wait_until(lambda: any(3 in FusedBatch.decode(m.payload).label.tolist() for m in batches.matching()), 10)
    sender.send(_labels([(20, 5)], supersedes=True))
    sender.send(_labels([(21, -1)], supersedes=True))
    forwarded = wait_until(lambda: len(relabels.matching()) == 2, 10)
    released = wait_until(lambda: len(sender.outbox) == 0, 10)
    time.sleep(0.5)

    # Assert: forwarded unchanged, in custody at the PUBACK, and no label-only row for the correction
    msgs = [schemas.loads(m.payload, schemas.Labels) for m in relabels.matching()]
    assert forwarded and released
    assert [(m.items[0].sample, m.items[0].label, m.supersedes) for m in msgs] == [(20, 5, True), (21, -1, True)]
    labels_out = [y for m in batches.matching() for y in FusedBatch.decode(m.payload).label.tolist()]
    assert 5 not in labels_out
    assert b.counters.get("out.relabel") == 2


def test_a_correction_fixes_a_row_fusion_still_holds(broker, topics, mqtt_factory, bridges):
    # Prepare: a long label_wait, so the row is still in fusion when the correction arrives
    pub, worker = mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics, fusion=dict(label_wait=1.5, batch_age=0.1))
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    batches = Collector(worker).add(topics.hub_batches())
    lt = topics.label("cam-1", "front")

    # Execute
    pub.publish(topics.feat("cam-1", "front"), feat("cam-1", 1, [30, 31]), qos=1)
    pub.publish(lt, schemas.dumps(_labels([(30, 2), (31, 2)])), qos=1)
    pub.publish(lt, schemas.dumps(_labels([(30, 6), (31, -1)], supersedes=True)), qos=1)
    out = wait_until(lambda: batches.matching(), 10)

    # Assert: the batch carries the corrected label and the retraction, never the old ones
    fb = FusedBatch.decode(out[0].payload)
    assert dict(zip(fb.sample.tolist(), fb.label.tolist(), strict=True)) == {30: 6, 31: -1}


def test_a_label_the_bridge_never_took_reaches_a_worker_after_its_publisher_restarts(broker, topics, mqtt_factory,
                                                                                    bridges, tmp_path):
    from shared.stores.label_journal import LabelJournal

    # Prepare: a publisher labels while no bridge runs (the broker drops the message: nobody holds it)
    path = tmp_path / "labels.sqlite"
    first = mqtt_factory()
    before = LabelSender(first, topics, LabelOutbox("console_t", timeout_s=30, journal=LabelJournal(path).open()))
    before.send(_labels([(40, 7)]))
    before.outbox.journal.close()
    first.stop()  # the console goes down before any custody

    # Execute: a bridge and a worker come up, then the publisher starts again on the same journal
    pub, worker, lab = mqtt_factory(), mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics, fusion=dict(label_wait=0.3, batch_age=0.1), custody=dict(interval_s=0.2))
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    batches = Collector(worker).add(topics.hub_batches())
    journal = LabelJournal(path).open()
    after = LabelSender(lab, topics, LabelOutbox("console_t", timeout_s=30, journal=journal))
    time.sleep(0.2)
    pub.publish(topics.feat("cam-1", "front"), feat("cam-1", 1, [40, 41]), qos=1)
    after.pump()
    got = wait_until(lambda: any(7 in FusedBatch.decode(m.payload).label.tolist() for m in batches.matching()), 10)
    _ack(worker, topics, cfg, b, batches)
    released = wait_until(lambda: len(after.outbox) == 0, 10)

    # Assert: sent again under the new boot, fused, in custody, and gone from disk
    assert after.counters.get("labels.recovered") == 1
    assert got and released and len(journal) == 0
    journal.close()
