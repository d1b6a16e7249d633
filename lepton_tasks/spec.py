"""The task spec: one TOML file says what a task is, so a user's own task needs no code change.

A spec names the classes (and which of them raise alerts), the preprocessing (the step
vocabulary of ``shared/model/preprocess.py``, carried in every signed manifest), the model input,
the edge and cloud models as ``module:callable`` factories (defaults per kind), where the data
comes from, how it splits into seed / holdout / stream, and decision defaults. ``problem`` says
what is learned: classes from labels (the default), normal from the unlabelled stream (``anomaly``,
with its table: false-alarm rate, escalation band, contamination), or the next steps of a series
(``forecast``, with its table: horizon, lookback, interval). Unknown keys
are refused, and every error names the key (``TaskSpecError``: one line, for ``lepton tasks
check``). Paths in a spec are relative to the spec file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.model import preprocess
from shared.process.config import toml_error
from shared.process.config_errors import describe_one, key_line
from shared.protocol.topics import SEGMENT_RE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Callable_ = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                                 description="A `module:callable` importable from the Python path.")]
Size = Annotated[float, Field(gt=0, description="A count (>= 1) or a fraction of the samples (< 1).")]


class TaskSpecError(ValueError):
    """A spec that cannot be used; ``str()`` is one line that names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputCfg(_Strict):
    shape: list[int] = Field(min_length=1, max_length=3, description="One preprocessed sample, no batch axis: "
                                                                      "[C, H, W] for images, [C, T] for windows.")
    layout: Literal["NCHW", "NCT"] = Field(description="Axis order of the model input with its batch axis.")
    raw: str = Field("", max_length=200, description="What a source delivers, in words (defaults per kind).")

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(d < 1 for d in v):
            raise ValueError("every dimension must be >= 1")
        return v


class ModelsCfg(_Strict):
    edge: Callable_ | None = Field(None, description="Factory (input_shape, n_classes) -> cloud_worker.models.nets.EdgeNet;"
                                                     " default per kind.")
    cloud: Callable_ | None = Field(None, description="Factory (input_shape, n_classes) -> torch module returning "
                                                      "logits; default per kind.")
    edge_args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the edge factory "
                                      "(the default window model takes `bins`, docs/TASKS.md).")
    cloud_args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the cloud factory.")


class DatasetCfg(_Strict):
    source: Literal["folder", "npz", "csv", "callable"] = Field(description="Where the labelled samples come from.")
    path: str | None = Field(None, description="folder: one sub-folder per class; npz: arrays `x` and `y`; csv: one "
                                               "window per row. Relative to the spec file.")
    call: Callable_ | None = Field(None, alias="callable", description="callable: returns (x, y) or (x, y, info); "
                                   "info may hold `drift`, a mask of samples replayed last (docs/TASKS.md).")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the callable.")
    frame_size: list[int] | None = Field(None, min_length=2, max_length=2,
                                         description="folder: [width, height] every image is resized to "
                                                     "(default: the most common size).")
    label_column: str = Field("label", description="csv: the column holding the class (name or index).")
    channels: int = Field(1, ge=1, description="csv/npz: channels of a window (the row's values are channels "
                                               "x time, channel-major).")
    x_key: str = Field("x", description="npz: the array of samples.")
    y_key: str = Field("y", description="npz: the array of labels (class names or indexes).")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _what(self) -> DatasetCfg:
        if self.source == "callable" and not self.call:
            raise ValueError("source = 'callable' needs callable = 'module:function'")
        if self.source != "callable" and not self.path:
            raise ValueError(f"source = '{self.source}' needs path")
        return self


class SplitCfg(_Strict):
    seed: Size = Field(description="Labelled samples version 1 is trained on.")
    holdout: Size = Field(description="Samples the worker's gate scores candidates on (never trained on).")
    stream: Size | None = Field(None, description="Samples the simulated devices replay (default: all the rest).")
    shuffle_seed: int = Field(0, description="Seed of the deterministic split.")
    stratify: bool = Field(True, description="Seed and holdout keep every class (in proportion, at least one each).")


class CloudCfg(_Strict):
    """The cloud's input contract: how a device sends the raw sample, and how the cloud preprocesses it."""

    preprocess: list[dict[str, Any]] | None = Field(
        None, description="Steps of shared/model/preprocess.py the cloud runs on the raw sample. Default: the edge's "
                          "steps at twice the resolution (image: every resize/letterbox size doubled) or at full "
                          "length (window: the edge's steps without `resample`).")
    shape: list[int] | None = Field(None, min_length=2, max_length=3,
                                    description="The cloud model's input after its preprocessing, no batch axis; "
                                                "default: what the steps make of the data's first sample.")
    encoding: Literal["jpeg", "float16", "raw"] | None = Field(
        None, description="How a raw sample travels: jpeg (frames, at capture resolution), float16 or raw (the "
                          "source's own dtype). Default: jpeg for images, float16 for windows.")
    quality: int = Field(70, ge=1, le=100, description="JPEG quality of frames sent to the cloud.")
    uplink: Literal["escalations", "all"] | None = Field(
        None, description="Which samples travel raw: escalations (one in `decision.raw_every` of them) or all "
                          "(every feature row carries its sample, for inputs about the size of their features). "
                          "Default: escalations for images, all for windows.")

    @model_validator(mode="after")
    def _fits(self) -> CloudCfg:
        if self.uplink == "all" and self.encoding == "jpeg":
            raise ValueError("uplink = 'all' sends samples in feature batches, which carry tensors, not JPEG")
        if self.preprocess is not None:
            try:
                preprocess.build(self.preprocess)
            except preprocess.PreprocessError as exc:
                raise ValueError(f"preprocess: {exc}") from None
        return self


class TargetsCfg(_Strict):
    """What the scoreboard of a run checks for this task (lepton_views/scoreboard.py); None: not checked."""

    cloud_accuracy: float | None = Field(None, ge=0, le=1, description="The cloud model's holdout accuracy at the "
                                                                       "last version is at least this.")
    cloud_macro_f1: float | None = Field(None, ge=0, le=1, description="... and its holdout macro-F1.")
    cloud_over_edge: float | None = Field(0.02, ge=-1, le=1, description="At the last version the cloud is ahead "
                                                                         "of the edge model on the holdout by at "
                                                                         "least this (the cloud is worth asking).")
    edge_within: float | None = Field(0.03, ge=0, le=1, description="At the last version the edge model is within "
                                                                    "this of the cloud (the cloud taught it).")
    escalated_max: float = Field(0.20, gt=0, le=1, description="At most this share of samples escalated "
                                                               "(holdout), with joint >= cloud - 1 point.")
    uplink_reduction: float | None = Field(None, ge=0, description="Raw samples are at least this many times "
                                                                   "the uplink per sample. Default: 10 for "
                                                                   "images; none for windows, whose raw sample "
                                                                   "is about the size of its features. 0: not "
                                                                   "checked.")
    drift_accuracy: float | None = Field(None, ge=0, le=1, description="Field joint accuracy (100 predictions) "
                                                                       "gets back to at least this in the drift "
                                                                       "phase, unattended.")


class DecisionCfg(_Strict):
    policy: Literal["max_prob", "margin", "entropy"] = Field("max_prob", description="Default escalation policy.")
    threshold: float = Field(0.8, ge=0, le=1, description="Its threshold.")
    budget: float | None = Field(0.15, gt=0, le=1, description="Escalate at most this fraction of samples as "
                                                               "uncertain (the most uncertain ones); None: no cap.")
    raw_every: int = Field(1, ge=0, description="One escalation in this many carries its raw sample (the cloud "
                                                "answers it at full resolution and learns from it); the others "
                                                "carry the edge features only. 0: none does.")


class AnomalyCfg(_Strict):
    """An anomaly task learns normal from the unlabelled stream and alerts on what is not normal."""

    false_alarm_rate: float = Field(0.01, gt=0, lt=0.5, description="Share of normal windows allowed to raise an "
                                                                    "alert; the threshold is set on held-out "
                                                                    "normal scores for it (shared/model/threshold.py).")
    escalate_rate: float = Field(0.05, ge=0, lt=1, description="The escalation band: scores above the threshold "
                                                               "set for this false-alarm rate but below the alert "
                                                               "threshold escalate with their raw window; 0: no "
                                                               "band.")
    normal_classes: list[str] = Field(default_factory=lambda: ["normal"], min_length=1,
                                      description="Dataset classes that count as normal (ground truth for shipped "
                                                  "data: what the scoreboard and bench score against); the "
                                                  "models never see labels.")
    contamination: Literal["trim", "none"] = Field("trim", description="trim: fit, drop the top-scored "
                                                                       "`trim_fraction` of the training windows "
                                                                       "(likely unlabelled anomalies), refit; none: "
                                                                       "trust the stream to be normal.")
    trim_fraction: float = Field(0.05, ge=0, lt=0.5, description="Share of training windows trimmed as "
                                                                 "contamination (an upper bound on it: trimming "
                                                                 "a few normals costs little).")

    @model_validator(mode="after")
    def _band(self) -> AnomalyCfg:
        if self.escalate_rate and self.escalate_rate <= self.false_alarm_rate:
            raise ValueError(f"escalate_rate {self.escalate_rate:g} must exceed false_alarm_rate "
                             f"{self.false_alarm_rate:g} (the band lies below the alert threshold), or be 0")
        if len(set(self.normal_classes)) != len(self.normal_classes):
            raise ValueError("normal_classes must be unique")
        return self


class ForecastCfg(_Strict):
    """A forecast task predicts the next `horizon` steps from the last `lookback`, with an interval."""

    horizon: int = Field(ge=1, le=10_000, description="Steps ahead forecast (H).")
    lookback: int = Field(ge=1, le=100_000, description="Past steps a forecast sees (L).")
    interval: float = Field(0.8, gt=0, lt=1, description="Coverage of the prediction interval (0.8: the truth "
                                                         "falls inside 80 % of the time).")
    season: int | None = Field(None, ge=2, description="Season length in steps (24: hourly data, daily "
                                                       "cycle); None: no seasonality assumed.")
    interval_method: Literal["conformal"] = Field("conformal", description="How the interval is set: conformal "
                                                                           "(quantiles of held-out errors).")

    @model_validator(mode="after")
    def _fits(self) -> ForecastCfg:
        if self.season is not None and self.season > self.lookback:
            raise ValueError(f"season {self.season} is longer than the lookback {self.lookback}: a forecast "
                             f"could not see one whole season")
        return self


class TaskSpec(_Strict):
    name: str = Field(pattern=SEGMENT_RE.pattern, description="Task name (a topic segment).")
    kind: Literal["image", "window"] = Field(description="image: camera frames; window: sensor windows.")
    description: str = Field("", max_length=500, description="One or two sentences for `lepton tasks list`.")
    problem: Literal["classify", "anomaly", "forecast"] = Field(
        "classify", description="classify: labelled classes; anomaly: learn normal without labels, alert on the "
                                "rest (table `anomaly`); forecast: predict the next steps (table `forecast`).")
    classes: list[str] = Field(default_factory=list, description="Class names by index (the dataset's ground "
                                                                 "truth for anomaly tasks; optional for forecast).")
    alert_classes: list[str] = Field(default_factory=list, description="Classes that raise an event.")
    preprocess: list[dict[str, Any]] = Field(min_length=1, description="Steps of shared/model/preprocess.py, in order.")
    input: InputCfg = Field(description="The model input after preprocessing.")
    models: ModelsCfg = Field(default_factory=ModelsCfg, description="Edge and cloud model factories.")
    dataset: DatasetCfg = Field(description="The labelled data.")
    split: SplitCfg = Field(description="Seed / holdout / stream.")
    decision: DecisionCfg = Field(default_factory=DecisionCfg, description="Decision defaults for agents.")
    cloud: CloudCfg = Field(default_factory=CloudCfg, description="The cloud's input contract (raw sample, "
                                                                  "its encoding and preprocessing).")
    targets: TargetsCfg = Field(default_factory=TargetsCfg, description="What a run's scoreboard checks.")
    anomaly: AnomalyCfg | None = Field(None, description="problem = 'anomaly': false alarms, band, normal "
                                                         "classes, contamination (defaults when absent).")
    forecast: ForecastCfg | None = Field(None, description="problem = 'forecast': horizon, lookback, interval "
                                                           "(required).")
    citation: str = Field("", max_length=500, description="Where the data comes from, and its licence.")

    @field_validator("classes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("class names must be unique")
        if any(not c or len(c) > 64 for c in v):
            raise ValueError("class names are 1-64 characters")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        self._problem_fits()
        unknown = [a for a in self.alert_classes if a not in self.classes]
        if unknown:
            raise ValueError(f"alert_classes {unknown} are not among the classes")
        want = 3 if self.kind == "image" else 2
        if len(self.input.shape) != want:
            raise ValueError(f"a {self.kind} task's input.shape has {want} dimensions")
        if (self.kind == "image") != (self.input.layout == "NCHW"):
            raise ValueError(f"input.layout {self.input.layout} does not fit kind {self.kind!r}")
        try:
            preprocess.build(self.preprocess)
        except preprocess.PreprocessError as exc:
            raise ValueError(f"preprocess: {exc}") from None
        if self.cloud.shape is not None and len(self.cloud.shape) != want:
            raise ValueError(f"cloud.shape of a {self.kind} task has {want} dimensions")
        if self.kind == "window" and self.cloud.encoding == "jpeg":
            raise ValueError("cloud.encoding 'jpeg' is for image tasks")
        if self.kind == "image" and (self.cloud.uplink == "all"):
            raise ValueError("cloud.uplink 'all' is for window tasks (frames travel with escalations)")
        return self

    def _problem_fits(self) -> None:
        if self.problem != "forecast" and len(self.classes) < 2:
            raise ValueError(f"classes: a {self.problem!r} task names at least 2 classes")
        if self.problem != "anomaly" and self.anomaly is not None:
            raise ValueError(f"anomaly: the table is for problem = 'anomaly' (this task's is {self.problem!r})")
        if self.problem != "forecast" and self.forecast is not None:
            raise ValueError(f"forecast: the table is for problem = 'forecast' (this task's is {self.problem!r})")
        if self.problem == "forecast" and self.forecast is None:
            raise ValueError("forecast: problem = 'forecast' needs a [forecast] table (horizon, lookback)")
        if self.problem == "anomaly":
            cfg = self.anomaly_cfg
            unknown = [c for c in cfg.normal_classes if c not in self.classes]
            if unknown:
                raise ValueError(f"anomaly.normal_classes {unknown} are not among the classes")
            if len(cfg.normal_classes) == len(self.classes):
                raise ValueError("anomaly.normal_classes: every class is normal, so nothing could be scored an anomaly")
            clash = [a for a in self.alert_classes if a in cfg.normal_classes]
            if clash:
                raise ValueError(f"alert_classes {clash} are normal classes (anomaly.normal_classes)")

    @property
    def anomaly_cfg(self) -> AnomalyCfg:
        """The anomaly table, its defaults when the spec left it out."""
        return self.anomaly if self.anomaly is not None else AnomalyCfg()


def parse_spec(text: str, origin: str = "<spec>") -> TaskSpec:
    """Validate TOML text; TaskSpecError names the first bad key, the fix when there is one, and its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaskSpecError(toml_error(origin, exc)) from None
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        keys, sentence = describe_one(TaskSpec, e, data)
        if not keys:
            sentence = sentence.removeprefix("<top level>: ")
        line = key_line(text, keys)
        at = f" (line {line})" if line else ""
        raise TaskSpecError(f"{origin}: {sentence}{at}{more}") from None


def read_spec(path: Path) -> TaskSpec:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TaskSpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_spec(text, str(path))
