"""The `problem` key and its tables: classify stays today's default; anomaly and forecast are checked key by key."""

from __future__ import annotations

import pytest

from lepton_tasks import TaskSpecError, parse_spec
from lepton_tasks.spec import AnomalyCfg

BASE = ('name = "t"\nkind = "window"\n{top}preprocess = [{{op = "batch"}}]\n'
        '[input]\nshape = [1, 8]\nlayout = "NCT"\n[dataset]\nsource = "npz"\npath = "x.npz"\n'
        '[split]\nseed = 4\nholdout = 4\n{tables}')
CLASSES = 'classes = ["normal", "fault"]\n'


def spec(top: str = CLASSES, tables: str = ""):
    return parse_spec(BASE.format(top=top, tables=tables), "t.toml")


def test_classify_is_the_default_and_takes_no_problem_tables():
    s = spec()
    assert s.problem == "classify" and s.anomaly is None and s.forecast is None


def test_anomaly_defaults_when_the_table_is_left_out():
    s = spec(CLASSES + 'problem = "anomaly"\nalert_classes = ["fault"]\n')
    cfg = s.anomaly_cfg
    assert cfg == AnomalyCfg() and cfg.false_alarm_rate == 0.01 and cfg.normal_classes == ["normal"]
    assert cfg.contamination == "trim" and cfg.escalate_rate > cfg.false_alarm_rate


def test_anomaly_and_forecast_tables_are_read():
    s = spec(CLASSES + 'problem = "anomaly"\n',
             '[anomaly]\nfalse_alarm_rate = 0.05\nescalate_rate = 0.1\nnormal_classes = ["fault"]\n'
             'contamination = "none"\ntrim_fraction = 0\n')
    assert (s.anomaly.false_alarm_rate, s.anomaly.normal_classes, s.anomaly.contamination) == (0.05, ["fault"], "none")
    f = spec('problem = "forecast"\n', '[forecast]\nhorizon = 24\nlookback = 168\nseason = 24\n').forecast
    assert (f.horizon, f.lookback, f.interval, f.season, f.interval_method) == (24, 168, 0.8, 24, "conformal")


@pytest.mark.parametrize("top,tables,needle", [
    ('problem = "regress"\n' + CLASSES, "", "t.toml: problem: Input should be 'classify', 'anomaly' or 'forecast'"),
    (CLASSES, "[anomaly]\nfalse_alarm_rate = 0.01\n", "t.toml: anomaly: the table is for problem = 'anomaly'"),
    (CLASSES, "[forecast]\nhorizon = 1\nlookback = 4\n", "forecast: the table is for problem = 'forecast'"),
    ('problem = "forecast"\n', "", "forecast: problem = 'forecast' needs a [forecast] table"),
    ('problem = "anomaly"\nclasses = ["normal"]\n', "", "classes: a 'anomaly' task names at least 2 classes"),
    ('problem = "anomaly"\n' + CLASSES, "[anomaly]\nfalse_alarm_rate = 0.5\n",
     "anomaly.false_alarm_rate: Input should be less than 0.5"),
    ('problem = "anomaly"\n' + CLASSES, "[anomaly]\nfalse_alarm_rate = 0.1\nescalate_rate = 0.05\n",
     "anomaly: escalate_rate 0.05 must exceed false_alarm_rate 0.1"),
    ('problem = "anomaly"\n' + CLASSES, '[anomaly]\nnormal_classes = ["ok"]\n',
     "anomaly.normal_classes ['ok'] are not among the classes"),
    ('problem = "anomaly"\n' + CLASSES, '[anomaly]\nnormal_classes = ["normal", "fault"]\n',
     "anomaly.normal_classes: every class is normal"),
    ('problem = "anomaly"\nalert_classes = ["normal"]\n' + CLASSES, "",
     "alert_classes ['normal'] are normal classes"),
    ('problem = "anomaly"\n' + CLASSES, '[anomaly]\ncontamination = "ignore"\n',
     "anomaly.contamination: Input should be 'trim' or 'none'"),
    ('problem = "anomaly"\n' + CLASSES, '[anomaly]\ntrim_fraction = 0.6\n', "anomaly.trim_fraction: Input should be"),
    ('problem = "anomaly"\n' + CLASSES, '[anomaly]\nthreshold = 3\n', "anomaly.threshold: unknown key"),
    ('problem = "forecast"\n', "[forecast]\nlookback = 48\n", "forecast.horizon: Field required"),
    ('problem = "forecast"\n', "[forecast]\nhorizon = 0\nlookback = 48\n", "forecast.horizon: Input should be"),
    ('problem = "forecast"\n', "[forecast]\nhorizon = 4\nlookback = 48\ninterval = 1.2\n",
     "forecast.interval: Input should be less than 1"),
    ('problem = "forecast"\n', "[forecast]\nhorizon = 4\nlookback = 12\nseason = 24\n",
     "forecast: season 24 is longer than the lookback 12"),
    ('problem = "forecast"\n', '[forecast]\nhorizon = 4\nlookback = 12\ninterval_method = "bootstrap"\n',
     "forecast.interval_method: Input should be 'conformal'"),
    ('problem = "forecast"\n', "[forecast]\nhorizon = 4\nlookback = 12\nlags = 3\n", "forecast.lags: unknown key"),
])
def test_problem_errors_are_one_line_naming_the_key(top, tables, needle):
    with pytest.raises(TaskSpecError) as err:
        spec(top, tables)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg, msg


@pytest.mark.parametrize("name,normals", [("health-anomaly", 2919), ("industrial-anomaly", 2527)])
def test_the_shipped_anomaly_tasks_name_a_normal_class_the_data_holds(name, normals):
    from lepton_tasks import load_task

    task = load_task(name)
    cfg = task.spec.anomaly_cfg
    assert task.problem == "anomaly" and cfg.normal_classes == ["normal"]
    y = task.dataset().y
    assert int((y == task.classes.index("normal")).sum()) == normals  # the archive's counts, TRAIN + TEST
    assert set(task.alert_classes) == set(task.classes) - set(cfg.normal_classes)
