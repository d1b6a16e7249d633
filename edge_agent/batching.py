"""Feature batching, pure: rows collect until the batch is full, old enough, or the model changes.

A row may carry its raw sample (the cloud contract's ``uplink = "all"``); a batch holds rows that all
do, of one shape and dtype, or rows that all don't: a change closes the open batch, like a model change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Rows:
    model_version: int
    sample: np.ndarray  # (N,) int64
    feat: np.ndarray  # (N, D) float32
    scores: np.ndarray  # (N, C) float32
    ts: np.ndarray  # (N,) float64
    raw: np.ndarray | None = None  # (N, ...) the samples themselves, when the rows carry them


class FeatureBatcher:
    def __init__(self, batch_size: int, max_age_s: float) -> None:
        self.batch_size = batch_size
        self.max_age_s = max_age_s
        self._version: int | None = None
        self._raw_kind: tuple | None = None  # (shape, dtype) of the open batch's raw rows, or None
        self._first: float = 0.0
        self._sample: list[int] = []
        self._feat: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._ts: list[float] = []
        self._raw: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._sample)

    def add(self, sample: int, feat: np.ndarray, scores: np.ndarray, ts: float, model_version: int,
            now: float, raw: np.ndarray | None = None) -> list[Rows]:
        """Add a row; returns the batches that became ready (a model change closes the open one)."""
        out: list[Rows] = []
        raw_kind = None if raw is None else (raw.shape, raw.dtype.str)
        if self._sample and (model_version != self._version or raw_kind != self._raw_kind):
            out.append(self._take())
        if not self._sample:
            self._first = now
            self._version = model_version
            self._raw_kind = raw_kind
        if raw is not None:
            self._raw.append(raw)
        self._sample.append(sample)
        self._feat.append(np.asarray(feat, dtype=np.float32).reshape(-1))
        self._scores.append(np.asarray(scores, dtype=np.float32).reshape(-1))
        self._ts.append(ts)
        if len(self._sample) >= self.batch_size:
            out.append(self._take())
        return out

    def due(self, now: float) -> Rows | None:
        """The open batch if its oldest row is older than max_age_s."""
        if self._sample and now - self._first >= self.max_age_s:
            return self._take()
        return None

    def flush(self) -> Rows | None:
        return self._take() if self._sample else None

    def _take(self) -> Rows:
        assert self._version is not None
        rows = Rows(self._version, np.asarray(self._sample, dtype=np.int64), np.stack(self._feat),
                    np.stack(self._scores), np.asarray(self._ts, dtype=np.float64),
                    np.stack(self._raw) if self._raw else None)
        self._sample, self._feat, self._scores, self._ts, self._raw = [], [], [], [], []
        return rows
