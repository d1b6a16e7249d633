"""The stop reaches every long step: between layers forward and backward, between chunks, between export
steps; outside a watched section (the answering thread) and inside a shielded one, nothing is stopped."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from cloud_worker.models import nets, stopcheck, train
from cloud_worker.models.stopcheck import Interrupted, chunks, watching
from cloud_worker.releasing import export as ex
from lepton_tasks import load_task


class Trip(nn.Module):
    """A layer that sets the stop event as it runs: the signal arriving in the middle of a forward pass."""

    def __init__(self, ev: threading.Event) -> None:
        super().__init__()
        self.ev = ev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ev.set()
        return x


class Count(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


def test_a_stop_in_the_middle_of_a_forward_pass_ends_it_before_the_next_layer():
    ev = threading.Event()
    after = Count()
    model = nn.Sequential(nn.Linear(4, 4), Trip(ev), after, nn.Linear(4, 2))
    with pytest.raises(Interrupted):
        train.fit(model, np.zeros((8, 4), np.float32), np.zeros(8, np.int64), epochs=1, batch=8,
                  device=torch.device("cpu"), jitter=False, stop=ev)
    assert after.calls == 0


def test_a_stop_after_the_forward_pass_ends_the_backward_pass():
    ev = threading.Event()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 2))
    with watching(ev):
        loss = model(torch.randn(3, 4)).sum()
        ev.set()
        with pytest.raises(Interrupted):
            loss.backward()
    assert model[0].weight.grad is None  # the first layer's gradient was never reached


def test_outside_a_watched_section_or_inside_a_shielded_one_a_set_event_stops_nothing():
    ev = threading.Event()
    ev.set()
    model = nn.Sequential(nn.Linear(4, 2))
    assert model(torch.zeros(1, 4)).shape == (1, 2)  # the answering thread: never watched
    with watching(ev):
        with watching(None):  # a version being written
            assert model(torch.zeros(1, 4)).shape == (1, 2)
        with pytest.raises(Interrupted):
            model(torch.zeros(1, 4))
    assert stopcheck.current() is None


def test_chunks_are_sized_by_time_and_a_stop_is_heard_between_them():
    sizes = []
    for s in chunks(200, first=2, target_s=0.05):
        sizes.append(s.stop - s.start)
        time.sleep(0.01 * sizes[-1])  # 10 ms an item: ~5 items make 0.05 s
    assert sum(sizes) == 200 and sizes[0] == 2
    assert max(sizes[1:]) <= 10  # never a count that would take many times the target
    ev = threading.Event()
    done = 0
    with watching(ev), pytest.raises(Interrupted):
        for s in chunks(1000, first=4):
            done += s.stop - s.start
            ev.set()
    assert done == 4


def test_export_and_parity_check_are_left_between_steps_when_stopping():
    task = load_task("digits")
    net = nets.build_edge(task).eval()
    x = np.zeros((2, *task.input_shape), np.float32)
    ev = threading.Event()
    ev.set()
    with watching(ev), pytest.raises(Interrupted):
        ex.export(net, task, x, opset=17, parity_tolerance=1e-4)
    assert ex.export(net, task, x, opset=17, parity_tolerance=1e-4).parity <= 1e-4  # not watched: exported


def test_minirocket_scores_chunk_by_chunk_as_it_would_all_at_once():
    from cloud_worker.models.rocket import MiniRocketClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 1, 40)).astype(np.float32)
    y = (x[:, 0, :20].mean(1) > 0).astype(np.int64)
    m = MiniRocketClassifier((1, 40), 2, n_kernels=500)
    m.fit(x[:80], y[:80])
    whole = m._ridge.decision_function(m._features(x[80:]))
    assert np.allclose(m.scores(x[80:])[:, 1], whole, atol=1e-4)
    ev = threading.Event()
    ev.set()
    with watching(ev), pytest.raises(Interrupted):
        m.predict_proba(x[80:])
