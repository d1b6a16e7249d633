"""What of a captured sample goes to the cloud: the serving manifest's cloud contract, applied.

The contract (``Manifest.cloud``, signed) says how a raw sample travels (JPEG at capture resolution,
float16, or the source's dtype) and which samples do: one escalation in ``decision.raw_every``
(``uplink = "escalations"``), and, for inputs about the size of their own features (sensor
windows), every sample too, riding with its feature row (``uplink = "all"``). Without a contract
(a manifest of an older worker) an escalation carries the edge's model input, as it used to.

Pure apart from counters: encoding failures are counted by reason, never raised, so a frame the
encoder refuses still gets its edge decision.
"""

from __future__ import annotations

import numpy as np

from shared.process.counters import Counters
from shared.protocol import rawsample
from shared.protocol.rawsample import RawError, RawRows
from shared.protocol.schemas import CloudInput


class RawUplink:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def escalation(self, cloud: CloudInput | None, sample: np.ndarray) -> RawRows | None:
        """The raw rows an escalation carries (one), or None when encoding failed (counted)."""
        if cloud is None:
            return None
        try:
            enc = rawsample.encode(sample, cloud.encoding, cloud.quality)
        except RawError as exc:
            self.counters.inc(f"escalation.raw_failed.{exc.reason}")
            return None
        self.counters.inc("escalation.raw")
        return RawRows.jpeg([enc]) if cloud.encoding == "jpeg" else RawRows.tensor(enc[None])

    def feature_row(self, cloud: CloudInput | None, sample: np.ndarray) -> np.ndarray | None:
        """The sample as its feature row carries it (``uplink = "all"``), or None."""
        if cloud is None or cloud.uplink != "all" or cloud.encoding == "jpeg":
            return None
        try:
            return rawsample.encode(sample, cloud.encoding, cloud.quality)
        except RawError as exc:
            self.counters.inc(f"feat.raw_failed.{exc.reason}")
            return None
