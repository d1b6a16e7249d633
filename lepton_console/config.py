"""ConsoleConfig: TOML + environment (LEPTON_CONSOLE__*), like every Lepton role."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.process.metrics import MetricsSettings, with_port
from shared.protocol.topics import DEFAULT_ROOT
from shared.transport.mqtt import MqttSettings


class ConsoleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ENV_ROLE: ClassVar[str] = "console"  # LEPTON_CONSOLE__* env vars (shared.process.config)

    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection (its own identity "
                                                                         "console_<name> on a secure broker).")
    root: str = Field(DEFAULT_ROOT, description="Topic root.")
    name: str = Field("console_1", pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$",
                      description="Label publisher name for custody (hub/custody/{name}); the broker identity on "
                                  "a secure broker, so the ACL lets it read its own custody topic.")
    host: str = Field("127.0.0.1", description="Address the web server binds; anything but loopback exposes it.")
    port: int = Field(8765, ge=0, le=65535, description="Web server port; 0 picks a free one.")
    token: str | None = Field(None, min_length=16, max_length=256,
                              description="Login token; None makes a random one, printed at start.")
    registry: Path | None = Field(None, description="The worker's registry directory, when it is on this host: "
                                                    "the Models page then shows every gate decision and why.")
    max_items: int = Field(5000, ge=10, description="Unlabelled samples kept in the queue (oldest dropped, counted).")
    max_history: int = Field(20000, ge=10, description="Labels kept for the review page (oldest forgotten).")
    max_sample_bytes: int = Field(1024 * 1024, ge=1024, description="A raw sample larger than this is shown as a "
                                                                    "placeholder with the reason.")
    outbox: Path | None = Field(None, description="SQLite file that keeps each label until the bridge has it in "
                                                  "custody, so labels a restart or crash of the console cut off "
                                                  "are sent again at its next start; None: memory only (a stop "
                                                  "then loses them, and says how many).")
    custody_timeout_s: float = Field(30.0, gt=0, description="Send a label again when the bridge has not given "
                                                             "custody within this long (doubling per attempt).")
    custody_timeout_max_s: float = Field(600.0, gt=0, description="Longest wait between two sends of one label.")
    push_every_s: float = Field(1.0, gt=0, le=30, description="Seconds between live updates of fleet and models.")
    metrics: MetricsSettings = Field(default_factory=with_port(9853), description="Prometheus /metrics endpoint "
                                                                                   "(docs/INTEGRATIONS.md).")
