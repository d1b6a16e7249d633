"""Labels at the hub: a new label message goes to fusion, a correction to every worker.

A keyed label message (``publisher``, ``boot``, ``seq``) is deduplicated and travels as a
:class:`~hub_bridge.label_custody.LabelTicket` whose custody ends only when what carries its items is
final (hub_bridge/label_custody.py). :class:`LabelRefs` is how fusion holds and lets go of a label's
reference, a ticket or a plain MQTT ack token alike; :class:`LabelRouter` decides where a decoded
message goes. Both run on the bridge's dispatcher thread.
"""

from __future__ import annotations

from collections.abc import Callable

from hub_bridge.acks import Acker, AckToken
from hub_bridge.fusion import Fuser
from hub_bridge.label_custody import LabelCustody, LabelTicket
from shared.process.counters import Counters
from shared.protocol.topics import Topics
from shared.transport.mqtt import Message, MqttClient, MqttError


class LabelRefs:
    """Hold and release what stands for a label in fusion: its ticket's custody and its ack token."""

    def __init__(self, labels: LabelCustody, acker: Acker) -> None:
        self.labels, self.acker = labels, acker

    def hold(self, ref) -> None:
        if isinstance(ref, LabelTicket):
            self.labels.hold(ref)
            ref = ref.tok
        self.acker.hold(ref)

    def release(self, ref) -> None:
        """Fusion lets a label go (unmatched, evicted, replaced): its ack and, for a ticket, its custody."""
        if isinstance(ref, LabelTicket):
            self.labels.release(ref)
            ref = ref.tok
        self.acker.release(ref)


class LabelRouter:
    """Where a label message goes: fusion for new labels, ``hub/relabel/{task}`` for corrections."""

    def __init__(self, labels: LabelCustody, refs: LabelRefs, fuser: Fuser, acker: Acker, counters: Counters,
                 topics: Topics, hi_client: Callable[[], MqttClient]) -> None:
        self.labels, self.refs, self.fuser, self.acker = labels, refs, fuser, acker
        self.counters, self.t, self.hi_client = counters, topics, hi_client

    def route(self, lb, msg: Message, tok: AckToken | None, now: float) -> bool:
        """``lb``: the decoded :class:`shared.protocol.schemas.Labels`; False for a copy already seen."""
        ticket = None
        if lb.seq is not None:  # under custody: deduplicated by (publisher, boot, seq)
            key = (lb.publisher, lb.boot, lb.seq)
            if not self.labels.admit(key):
                self.counters.inc("duplicate.label")
                return False
            ticket = LabelTicket(tok, key)
        self.counters.inc("labels.in", len(lb.items))
        if lb.supersedes:
            self._forward_relabel(lb, msg, tok, ticket, now)
        else:
            self.fuser.add_labels(lb, now, ticket or tok, self.refs.hold)
        if ticket is not None:
            self.labels.release(ticket)  # the processing reference: what carries an item holds its own
        return True

    def _forward_relabel(self, lb, msg: Message, tok: AckToken | None, ticket: LabelTicket | None,
                         now: float) -> None:
        """A correction: fix what fusion holds, and send the message unchanged to every worker
        (hub/relabel/{task}); its fate is final once the broker has that."""
        self.fuser.supersede(lb, now)
        self.acker.hold(tok)
        if ticket is not None:
            self.labels.hold(ticket)

        def acked(rc: int) -> None:
            if rc >= 0x80:
                self.counters.inc("out.relabel_denied")
            if ticket is not None:
                self.labels.release(ticket)
            self.acker.release(tok)
            self.acker.flush()

        try:
            self.hi_client().publish(self.t.hub_relabel(lb.task), msg.payload, qos=1, on_ack=acked)
            self.counters.inc("out.relabel")
        except MqttError:
            # Not forwarded: the message is acknowledged without custody, so its publisher sends it again.
            self.counters.inc("out.relabel_unsent")
            if ticket is not None:
                self.labels.lose(ticket)
            self.acker.release(tok)
