"""The fast task: scikit-learn's 8x8 handwritten digits drawn as 64x64 camera frames."""

from __future__ import annotations

import numpy as np


def render_digit(img8: np.ndarray, size: int = 64) -> np.ndarray:
    """An 8x8 digit (0..16) as the camera would see it: a size x size BGR uint8 frame."""
    import cv2

    g = np.clip(np.asarray(img8, dtype=np.float32) * (255.0 / 16.0), 0, 255).astype(np.uint8)
    big = cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


def frames(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.stack([render_digit(im, size) for im in d.images]), d.target.astype(np.int64)
