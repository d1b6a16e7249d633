"""The label publisher's outbox: stamping, resend with doubling waits, custody, corrections at the source."""

from __future__ import annotations

from shared.protocol import schemas
from shared.stores.label_outbox import LabelOutbox


def _lb(pairs, **kw) -> schemas.Labels:
    return schemas.Labels(device="cam-1", stream="s", task="digits",
                          items=[schemas.LabelItem(sample=s, label=y) for s, y in pairs], ts=1.0, **kw)


def test_outbox_resends_until_custody_with_doubling_waits():
    # Prepare
    ob = LabelOutbox("labeller_1", timeout_s=1.0, timeout_max_s=3.0, boot=5)
    a, b = ob.add(_lb([(1, 2)])), ob.add(_lb([(2, 3)]))

    # Execute / Assert
    assert (a.publisher, a.boot, a.seq, b.seq) == ("labeller_1", 5, 0, 1)
    assert [m.seq for m in ob.due(0.0)] == [0, 1]  # never sent
    ob.sent(0, 0.0)
    ob.sent(1, 0.0)
    assert ob.due(0.5) == [] and [m.seq for m in ob.due(1.0)] == [0, 1]
    ob.sent(0, 1.0)
    assert [m.seq for m in ob.due(2.5)] == [1]  # seq 0 now waits 2 s
    other = schemas.LabelCustody(publisher="labeller_1", boot=4, ranges=[(0, 1)], ts=1.0)
    assert ob.custody(other) == 0  # another boot's word is not ours
    assert ob.custody(schemas.LabelCustody(publisher="labeller_1", boot=5, ranges=[(0, 0)], ts=1.0)) == 1
    assert len(ob) == 1 and [m.seq for m in ob.due(100.0)] == [1]


def test_a_correction_drops_the_old_label_still_kept_so_a_resend_cannot_bring_it_back():
    ob = LabelOutbox("console_1", boot=1)
    ob.add(_lb([(1, 2), (2, 2)]))
    ob.add(_lb([(1, 4)]))

    dropped = ob.forget_sample("cam-1", 1)

    assert dropped == 2 and len(ob) == 1
    assert [i.sample for i in ob.due(0.0)[0].items] == [2]


def test_the_outbox_is_bounded_and_counts_what_it_gives_up():
    ob = LabelOutbox("console_1", boot=1, max_messages=3)
    for s in range(5):
        ob.add(_lb([(s, 1)]))
    assert len(ob) == 3 and ob.counters.get("labels.outbox_evicted") == 2


def test_retraction_needs_supersedes_and_custody_fields_go_together():
    import pytest

    with pytest.raises(schemas.InvalidPayload):
        schemas.loads(schemas.dumps(_lb([(1, 2)])).replace(b'"label":2', b'"label":-1'), schemas.Labels)
    with pytest.raises(schemas.InvalidPayload):
        schemas.loads(schemas.dumps(_lb([(1, 2)])).replace(b'"publisher":""', b'"publisher":"x"'), schemas.Labels)
    assert schemas.loads(schemas.dumps(_lb([(1, -1)], supersedes=True)), schemas.Labels).items[0].label == -1


def test_what_custody_did_not_cover_survives_a_restart_and_goes_out_again_under_the_new_boot(tmp_path):
    from shared.stores.label_journal import LabelJournal

    # Prepare: three labels kept, the bridge has taken the first, the second was corrected
    path = tmp_path / "console" / "labels.sqlite"
    before = LabelOutbox("console_1", boot=1, journal=LabelJournal(path).open())
    before.add(_lb([(1, 2)]))
    before.add(_lb([(2, 3), (3, 3)]))
    before.add(_lb([(4, 0)]))
    before.custody(schemas.LabelCustody(publisher="console_1", boot=1, ranges=[(0, 0)], ts=1.0))
    before.forget_sample("cam-1", 2)
    before.journal.close()  # the process ends here: the memory copy is gone

    # Execute
    journal = LabelJournal(path).open()
    after = LabelOutbox("console_1", boot=2, journal=journal)

    # Assert: in order, under boot 2, the correction's effect kept, nothing covered sent again
    due = after.due(0.0)
    assert [(m.boot, m.seq, [(i.sample, i.label) for i in m.items]) for m in due] == [
        (2, 0, [(3, 3)]), (2, 1, [(4, 0)])]
    assert after.counters.get("labels.recovered") == 2 and len(journal) == 2
    after.custody(schemas.LabelCustody(publisher="console_1", boot=2, ranges=[(0, 1)], ts=1.0))
    assert len(journal) == 0 and len(LabelOutbox("console_1", boot=3, journal=journal)) == 0


def test_an_unreadable_journal_is_moved_aside_and_a_bad_row_is_rejected_not_sent(tmp_path):
    import sqlite3

    from shared.stores.label_journal import LabelJournal

    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"not a database" * 100)
    journal = LabelJournal(path).open()
    assert journal.counters.get("labels.journal_unreadable") == 1
    assert [p.name.split("-")[0] for p in tmp_path.glob("labels.sqlite.unreadable-*")] == ["labels.sqlite.unreadable"]

    journal.put(1, 0, b'{"v":1,"device":"cam-1"')  # truncated
    journal.put(1, 1, schemas.dumps(_lb([(9, 1)]).model_copy(update={"publisher": "console_1", "seq": 1})))
    journal.put(1, 2, b"\xff" * 64)
    ob = LabelOutbox("console_1", boot=2, journal=journal)
    assert [[i.sample for i in m.items] for m in ob.due(0.0)] == [[9]]
    assert ob.counters.total("labels.journal_rejected.") == 2 and len(journal) == 1

    ob = LabelOutbox("console_1", boot=3, journal=journal)
    with sqlite3.connect(path) as db:  # the file breaks under a running console: a write fails
        db.execute("DROP TABLE kept")
    ob.add(_lb([(5, 1)]))
    assert journal.counters.get("labels.journal_errors") == 1 and len(ob) == 2  # kept in memory, counted
