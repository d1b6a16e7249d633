"""Tasks as data: a spec file is validated, found, loaded and checked; every bad spec gets one line."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from lepton_cli.tasks import check
from lepton_tasks import TaskSpecError, load_task, parse_spec
from lepton_tasks import registry as reg
from shared.protocol.topics import Kind
from tests.edge.conftest import wait_until

from .shapes import CLASSES, write_task

REPO = Path(__file__).resolve().parents[2]


def _lepton(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lepton_cli.main", *args], capture_output=True, text=True,
                          timeout=180, cwd=REPO)


def test_folder_task_loads_counts_the_corrupt_image_and_checks(tmp_path):
    spec = write_task(tmp_path, per_class=20, seed=6, holdout=15)
    task = load_task(str(spec))
    d = task.dataset()
    assert task.classes == CLASSES and task.origin == "path"
    assert d.raw.shape == (60, 80, 80, 3) and d.raw.dtype == np.uint8
    assert d.skipped == {"unreadable": 1}  # broken.jpg: counted and skipped, the rest loaded
    assert np.bincount(d.y).tolist() == [20, 20, 20]
    assert len(d.seed) == 6 and len(d.holdout) == 15 and len(d.stream) == 39
    assert set(d.y[d.seed]) == {0, 1, 2}  # stratified: v1 sees every class
    lines: list[str] = []
    check(str(spec), out=lines.append)
    text = "\n".join(lines)
    assert "skipped: 1 unreadable" in text and "edge model: EdgeNet" in text and "scores (3,)" in text
    assert load_task("shapes") is task  # found by its name too, once loaded by its path


def test_cli_lists_the_shipped_scenarios_and_checks_one(tmp_path):
    out = _lepton("tasks", "list")
    assert out.returncode == 0, out.stderr
    for name in ("camera", "digits", "health", "industrial", "traffic"):
        assert any(line.split()[0] == name and "shipped" in line for line in out.stdout.splitlines()[1:]), name
    spec = write_task(tmp_path, per_class=10, seed=6, holdout=9)
    ok = _lepton("tasks", "check", str(spec))
    assert ok.returncode == 0 and ok.stdout.strip().endswith("ok"), ok.stdout + ok.stderr


def _bad(tmp_path: Path, name: str, **edit: str) -> Path:
    spec = write_task(tmp_path / name, per_class=6, seed=3, holdout=3, name="bad")
    text = spec.read_text()
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new)
    spec.write_text(text)
    return spec


def _factory_module(tmp_path: Path) -> str:
    """A user's model factory on the path that gets the class count wrong (4 for a 3-class task)."""
    (tmp_path / "wrong_models.py").write_text(
        "from cloud_worker.models.nets import image_edge\n"
        "def edge(input_shape, n_classes):\n"
        "    return image_edge(input_shape, n_classes + 1)\n")
    return "wrong_models:edge"


@pytest.mark.parametrize("case,needle", [
    ("unknown_key", "bad.toml: colour: unknown key"),
    ("class_count", "models.edge: outputs 4 class scores, the spec names 3 classes"),
    ("missing_dataset", "dataset.path: "),
    ("bad_callable", "cannot import 'no_such_module'"),
    ("bad_alert", "alert_classes ['hexagon'] are not among the classes"),
    ("bad_step", "preprocess: step 0: unknown op 'sharpen'"),
    ("bad_model_arg", "models.edge_args: cloud_worker.models.nets:image_edge refused {'bins': 12}"),
])
def test_malformed_specs_get_one_line_naming_the_key_and_exit_2(tmp_path, case, needle):
    edits = {
        "unknown_key": {'kind = "image"': 'kind = "image"\ncolour = "red"'},
        "class_count": {"[input]": f'[models]\nedge = "{_factory_module(tmp_path)}"\n\n[input]'},
        "missing_dataset": {'path = "images"': 'path = "no-such-folder"'},
        "bad_callable": {'source = "folder"\npath = "images"': 'source = "callable"\ncallable = "no_such_module:f"'},
        "bad_alert": {'alert_classes = ["triangle"]': 'alert_classes = ["hexagon"]'},
        "bad_step": {'{ op = "resize", size = [32, 32], interp = "area" }': '{ op = "sharpen" }'},
        "bad_model_arg": {"[input]": '[models]\nedge_args = { bins = 12 }\n\n[input]'},  # a window model's
    }[case]
    spec = _bad(tmp_path, case, **edits)
    out = subprocess.run([sys.executable, "-m", "lepton_cli.main", "tasks", "check", str(spec)],
                         capture_output=True, text=True, timeout=180, cwd=REPO,
                         env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("lepton tasks check:")]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_spec_errors_are_typed_and_toml_errors_say_where():
    with pytest.raises(TaskSpecError, match="not valid TOML"):
        parse_spec("name = ", "x.toml")
    with pytest.raises(TaskSpecError, match="classes: .*at least 2"):
        parse_spec('name = "a"\nkind = "window"\nclasses = ["one"]\npreprocess = [{op="batch"}]\n'
                   '[input]\nshape=[1,4]\nlayout="NCT"\n[dataset]\nsource="npz"\npath="x.npz"\n'
                   '[split]\nseed=1\nholdout=1\n', "x.toml")
    with pytest.raises(TaskSpecError, match="unknown task 'nope'"):
        load_task("nope")


def test_an_installed_task_pack_is_found_by_name(tmp_path, monkeypatch):
    spec = write_task(tmp_path, per_class=6, seed=3, holdout=3, name="packed")

    class FakeDist:
        name = "lepton-shapes-pack"

    ep = metadata.EntryPoint("packed", "tests.tasks.test_specs:SPEC", reg.ENTRY_POINT_GROUP)
    object.__setattr__(ep, "dist", FakeDist())
    monkeypatch.setattr(reg.metadata, "entry_points", lambda group: [ep] if group == reg.ENTRY_POINT_GROUP else [])
    monkeypatch.setitem(globals(), "SPEC", spec)
    found = reg.locate("packed")
    assert found.origin == "pack lepton-shapes-pack" and found.path == spec
    assert load_task("packed").classes == CLASSES


def test_window_tasks_from_npz_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2, 16)).astype(np.float32)
    y = np.array(["up", "down", "flat"] * 10)
    np.savez(tmp_path / "w.npz", x=x, y=y)
    rows = ["label," + ",".join(f"v{i}" for i in range(32))]
    rows += [f"{lab}," + ",".join(str(v) for v in xi.reshape(-1)) for lab, xi in zip(y, x, strict=True)]
    rows.append("up,not-a-number" + ",0" * 31)
    (tmp_path / "w.csv").write_text("\n".join(rows))
    base = ('name = "{n}"\nkind = "window"\nclasses = ["up", "down", "flat"]\npreprocess = [{{op = "batch"}}]\n'
            '[input]\nshape = [2, 16]\nlayout = "NCT"\n[dataset]\nsource = "{src}"\npath = "{p}"\nchannels = 2\n'
            '[split]\nseed = 6\nholdout = 6\n')
    for src, p in (("npz", "w.npz"), ("csv", "w.csv")):
        f = tmp_path / f"{src}.toml"
        f.write_text(base.format(n=f"w-{src}", src=src, p=p))
        d = load_task(str(f)).dataset()
        assert d.raw.shape == (30, 2, 16) and np.allclose(d.raw, x)
        assert d.skipped == ({"unparsable_row": 1} if src == "csv" else {})


def test_npz_integer_labels_outside_the_class_range_are_named(tmp_path):
    x = np.zeros((10, 8), np.float32)
    np.savez(tmp_path / "w.npz", x=x, y=np.array([-1, 1] * 5))
    f = tmp_path / "t.toml"
    f.write_text('name = "t"\nkind = "window"\nclasses = ["normal", "fault"]\npreprocess = [{op = "batch"}]\n'
                 '[input]\nshape = [1, 8]\nlayout = "NCT"\n[dataset]\nsource = "npz"\npath = "w.npz"\n'
                 '[split]\nseed = 2\nholdout = 2\n')
    with pytest.raises(TaskSpecError) as e:
        load_task(str(f)).dataset()
    msg = str(e.value)
    assert "dataset.path" in msg and "-1, 1" in msg and "0..1" in msg and "class names" in msg


def test_the_window_model_keeps_stretches_apart_and_still_exports():
    from cloud_worker.models import nets
    from cloud_worker.releasing.export import check_onnx, to_onnx

    x = np.random.default_rng(0).normal(size=(4, 2, 16)).astype(np.float32)
    for bins, kept in ((1, 1), (4, 4), (5, 4), (99, 8)):  # 16 -> 8 after the pool: a divisor of 8 at most `bins`
        net = nets.window_edge((2, 16), 3, bins=bins)
        pool = [m for m in net.backbone if isinstance(m, __import__("torch").nn.AdaptiveAvgPool1d)][0]
        assert pool.output_size == kept
        check_onnx(to_onnx(net.eval(), (2, 16)), net, x, 1e-4)  # raises when ONNX Runtime disagrees
    with pytest.raises(ValueError, match="bins"):
        nets.window_edge((2, 16), 3, bins=0)


@pytest.mark.broker
def test_an_agent_runs_a_task_it_has_never_seen_from_the_manifest_alone(tmp_path, make_agent, collect, topics,
                                                                       monkeypatch):
    # Prepare: a signed model of a user's task, made where the task pack lives (the cloud)
    from tests.edge.models import release, write_files

    spec = write_task(tmp_path, per_class=60, seed=90, holdout=30, name="never-seen")
    d = load_task(str(spec)).dataset()
    rel = release(topics, "never-seen", 1)  # trained on the task's seed set
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    for k, i in enumerate(d.stream[:24]):
        cv2.imwrite(str(frames / f"{k:03d}-{CLASSES[d.y[i]]}.png"), d.raw[i])
    # ... and on the device no task table at all: any lookup would fail the test
    def no_lookup(*a, **k):
        raise AssertionError("the agent looked its task up")

    monkeypatch.setattr(reg, "load_task", no_lookup)
    monkeypatch.setattr(reg, "locate", no_lookup)
    agent = make_agent(start=False, task="never-seen", source={"type": "folder", "path": str(frames)},
                       capture={"start_after_model": True},
                       model=write_files(rel, tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    # Execute
    agent.start()
    preds = wait_until(lambda: (p := col.of(Kind.PRED)) and len(p) == 24 and p, what="24 predictions")
    # Assert: classes, alerts and preprocessing came with the manifest
    assert {p.task for p in preds} == {"never-seen"}
    # The same labels as the model run offline, on the same files, with the task's own preprocessing
    import onnxruntime as ort

    from shared.model import preprocess

    sess = ort.InferenceSession(rel.onnx, providers=["CPUExecutionProvider"])
    run = preprocess.build(rel.manifest.input.preprocess["steps"])
    want = {f.name: int(sess.run(["probs"], {"x": run(cv2.imread(str(f)))})[0].argmax())
            for f in sorted(frames.iterdir())}
    assert {p.ref: p.label for p in preds if p.source == "edge"} == {
        p.ref: want[p.ref] for p in preds if p.source == "edge"}
    assert rel.manifest.input.classes == list(CLASSES)
    events = col.of(Kind.EVENT)
    assert all(e.name == "triangle" for e in events)
    assert agent.counters.get("frames.bad_input") == 0


def test_docs_describe_every_spec_key():
    from lepton_tasks.spec import (
        AnomalyCfg,
        CloudCfg,
        DatasetCfg,
        DecisionCfg,
        ForecastCfg,
        InputCfg,
        ModelsCfg,
        SplitCfg,
        TargetsCfg,
        TaskSpec,
    )

    doc = (REPO / "docs" / "TASKS.md").read_text()
    for model in (TaskSpec, InputCfg, ModelsCfg, DatasetCfg, SplitCfg, DecisionCfg, CloudCfg, TargetsCfg,
                  AnomalyCfg, ForecastCfg):
        for name, field in model.model_fields.items():
            key = field.alias or name
            assert f"{key} " in doc or f"{key} =" in doc or f"`{key}`" in doc, f"docs/TASKS.md lacks {model.__name__}.{key}"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["camera", "digits", "health", "industrial", "traffic", "csv-window"])
def test_lepton_tasks_check_runs_both_models_of_every_shipped_spec_and_a_csv_window_task(tmp_path, name):
    """Window tasks' cloud model is MiniRocket, not a torch module: the check fits it on the seed, then runs it."""
    ref = name
    if name == "csv-window":
        rng = np.random.default_rng(1)
        rows = ["label," + ",".join(f"v{i}" for i in range(40))]
        for i in range(60):
            lab = ("up", "down")[i % 2]
            trend = np.linspace(0, 1 if lab == "up" else -1, 40)
            rows.append(f"{lab}," + ",".join(f"{v:.4f}" for v in trend + rng.normal(0, 0.1, 40)))
        (tmp_path / "w.csv").write_text("\n".join(rows))
        (tmp_path / "w.toml").write_text(
            'name = "w-csv"\nkind = "window"\nclasses = ["up", "down"]\npreprocess = [{op = "batch"}]\n'
            '[input]\nshape = [1, 40]\nlayout = "NCT"\n[dataset]\nsource = "csv"\npath = "w.csv"\n'
            '[split]\nseed = 20\nholdout = 10\n')
        ref = str(tmp_path / "w.toml")
    out = _lepton("tasks", "check", ref)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr
    cloud = next(line for line in out.stdout.splitlines() if "cloud model:" in line)
    if name in ("camera", "digits"):
        assert "CloudNet" in cloud and "logits" in cloud, cloud
    else:
        assert "MiniRocketClassifier, fitted on" in cloud, cloud
