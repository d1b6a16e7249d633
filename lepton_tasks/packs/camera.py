"""The home camera scenario: 320x240 colour frames of real photos composited onto real backgrounds.

No labelled colour set of people, pets and vehicles installs offline, so frames are composed,
deterministically from their index, out of the real photographs that ship inside scikit-image:
people (the astronaut, the cameraman, 100 faces of the LFW subset), a pet (Chelsea the cat),
vehicles (a motorcycle, a rocket on its pad), on crops of real surfaces (grass, gravel, brick,
a table with a cup). Position, scale, flip, lighting and sensor noise vary; every frame goes
through JPEG at quality 90 as a camera's MJPG stream would deliver it.

The stream ends in a **night** phase (dark, blue-shifted, noisy and low-contrast, as a camera in
low light): ``drift_at`` marks where it starts, for continual learning to recover from.

Frames are rendered on access (:class:`Frames`), so a process holds parameters, not pixels.
"""

from __future__ import annotations

import functools
import threading

import numpy as np

CLASSES = ("empty", "person", "pet", "vehicle")
W, H = 320, 240


@functools.cache
def _library() -> dict[str, list[np.ndarray]]:
    """Subject crops (BGR uint8) per class and background images, from scikit-image's bundled photos."""
    import cv2
    from skimage import data

    def bgr(rgb: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2BGR)

    def grey(g: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)

    astronaut, cat, moto = bgr(data.astronaut()), bgr(data.chelsea()), bgr(data.stereo_motorcycle()[0])
    rocket, coffee = bgr(data.rocket()), bgr(data.coffee())
    faces = data.lfw_subset()  # 200 x 25 x 25 floats in [0, 1]: the first 100 are faces
    people = [astronaut[0:400, 80:380], astronaut[30:260, 140:330], grey(data.camera())[40:400, 120:380]]
    people += [grey((faces[i] * 255).astype(np.uint8)) for i in range(0, 100, 4)]
    pets = [cat[10:300, 60:300], cat[0:300, 0:451], cat[40:260, 100:280], cv2.flip(cat[10:290, 40:320], 1)]
    vehicles = [moto[60:470, 20:720], moto[120:460, 80:660], rocket[0:427, 200:470], rocket[100:427, 150:520]]
    backgrounds = [grey(data.grass()), grey(data.gravel()), grey(data.brick()), coffee[200:400, 0:600],
                   coffee[0:200, 300:600]]
    return {"person": people, "pet": pets, "vehicle": vehicles, "background": backgrounds}


def _background(lib: dict, rng: np.random.Generator) -> np.ndarray:
    import cv2

    src = lib["background"][int(rng.integers(len(lib["background"])))]
    h, w = src.shape[:2]
    ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    bg = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], (W, H), interpolation=cv2.INTER_AREA).astype(np.float32)
    tint = rng.uniform(0.75, 1.2, size=3).astype(np.float32)  # surfaces of other colours
    return bg * tint


def _paste(frame: np.ndarray, obj: np.ndarray, rng: np.random.Generator) -> None:
    import cv2

    scale = rng.uniform(0.45, 0.9) * H / obj.shape[0]
    oh, ow = max(8, int(obj.shape[0] * scale)), max(8, int(obj.shape[1] * scale))
    ow = min(ow, W - 2)
    obj = cv2.resize(obj, (ow, oh), interpolation=cv2.INTER_AREA).astype(np.float32)
    if rng.random() < 0.5:
        obj = obj[:, ::-1]
    y0, x0 = int(rng.integers(0, max(1, H - oh))), int(rng.integers(0, max(1, W - ow)))
    oh = min(oh, H - y0)
    # A soft elliptical matte: the subject blends into the scene instead of sitting in a box.
    yy, xx = np.mgrid[0:oh, 0:ow].astype(np.float32)
    d = ((yy - oh / 2) / (oh / 2)) ** 2 + ((xx - ow / 2) / (ow / 2)) ** 2
    alpha = np.clip((1.15 - d) / 0.3, 0.0, 1.0)[..., None]
    region = frame[y0:y0 + oh, x0:x0 + ow]
    region[:] = alpha * obj[:oh] + (1 - alpha) * region


def render(index: int, label: int, night: bool, seed: int = 0) -> np.ndarray:
    """Frame ``index`` of class ``label``: the same pixels every time (seeded by index)."""
    import cv2

    lib = _library()
    rng = np.random.default_rng((seed, index))
    frame = _background(lib, rng)
    if CLASSES[label] != "empty":
        objs = lib[CLASSES[label]]
        _paste(frame, objs[int(rng.integers(len(objs)))], rng)
    frame *= rng.uniform(0.8, 1.15)  # daylight varies
    if night:
        # Low light: a fraction of the light, a blue cast, lifted blacks, strong sensor noise.
        frame = frame * rng.uniform(0.18, 0.3) + 12.0
        frame *= np.array([1.35, 0.95, 0.75], np.float32)
        frame += rng.normal(0.0, 9.0, frame.shape).astype(np.float32)
    else:
        frame += rng.normal(0.0, 3.0, frame.shape).astype(np.float32)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return cv2.imdecode(jpg, cv2.IMREAD_COLOR)


class Frames:
    """A read-only stack of frames rendered on access: ``frames[i]`` or ``frames[index_array]``."""

    def __init__(self, labels: np.ndarray, night: np.ndarray, seed: int) -> None:
        self.labels, self.night, self.seed = labels, night, seed
        self.shape = (len(labels), H, W, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            return render(int(i), int(self.labels[i]), bool(self.night[i]), self.seed)
        idx = np.arange(len(self))[i]
        return np.stack([render(int(k), int(self.labels[k]), bool(self.night[k]), self.seed) for k in idx]) \
            if len(idx) else np.zeros((0, H, W, 3), np.uint8)


def frames(day: int = 1600, night: int = 600, seed: int = 0):
    """(frames, labels, info): ``day`` daylight frames (seed and holdout come from these), then a stream
    of the remaining daylight frames followed by the ``night`` frames (``drift_at``: the first one)."""
    rng = np.random.default_rng(seed)
    n = day + night
    y = np.asarray(rng.integers(0, len(CLASSES), n), np.int64)
    is_night = np.zeros(n, bool)
    is_night[day:] = True
    return Frames(y, is_night, seed), y, {"drift": is_night}
