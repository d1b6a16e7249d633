"""A user's own image task, written by the tests: coloured shapes on noisy backgrounds, 3 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle")


def draw(kind: str, rng: np.random.Generator, size: int = 80) -> np.ndarray:
    import cv2

    img = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 0)
    colour = tuple(int(c) for c in rng.integers(90, 256, 3))
    r = int(rng.integers(size // 8, size // 3))
    cx, cy = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
    if kind == "circle":
        cv2.circle(img, (cx, cy), r, colour, -1)
    elif kind == "square":
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(img, [pts], colour)
    noise = rng.normal(0, 25, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_task(root: Path, per_class: int = 120, *, name: str = "shapes", seed: int = 12, holdout: int = 60,
               extra: str = "") -> Path:
    """An image folder (one sub-folder per class, PNG and JPEG, one corrupt file) and its spec; returns the spec."""
    import cv2

    rng = np.random.default_rng(7)
    data = root / "images"
    for c in CLASSES:
        (data / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ext = ".png" if i % 2 else ".jpg"
            cv2.imwrite(str(data / c / f"{i:04d}{ext}"), draw(c, rng))
    (data / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    spec = root / f"{name}.toml"
    spec.write_text(f"""
name = "{name}"
kind = "image"
description = "Shapes a user drew: the test of a task with no code."
classes = {list(CLASSES)!r}
alert_classes = ["triangle"]
preprocess = [
    {{ op = "resize", size = [32, 32], interp = "area" }},
    {{ op = "scale", mul = 0.00392156862745098 }},
    {{ op = "chw" }},
]
{extra}
[input]
shape = [3, 32, 32]
layout = "NCHW"

[dataset]
source = "folder"
path = "images"

[split]
seed = {seed}
holdout = {holdout}
""".replace("['", '["').replace("']", '"]').replace("', '", '", "'))
    return spec
