"""What the browser is shown of a sample: the JPEG frame as sent, a window as an SVG plot, the edge's
preprocessed input as a small PNG, or a placeholder that says why there is nothing to show.

JPEG bytes from a device are served as they came (image/jpeg), never decoded here; their frame header
is read first (``shared.protocol.rawsample.jpeg_dims``) so a file that is not a JPEG or claims absurd
dimensions becomes a placeholder with the reason, not a broken page.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from html import escape

import numpy as np

from shared.protocol.rawsample import MAX_SIDE, RawError, jpeg_dims

PLOT_POINTS = 600  # a window longer than this is drawn from evenly spaced points


@dataclass(frozen=True, slots=True)
class Shown:
    """One sample as the browser gets it: ``kind`` jpeg | png | svg | none; ``note`` says what it is."""

    kind: str
    data: bytes = b""
    note: str = ""
    width: int = 0
    height: int = 0

    @property
    def media_type(self) -> str:
        return {"jpeg": "image/jpeg", "png": "image/png", "svg": "image/svg+xml"}.get(self.kind, "text/plain")


def placeholder(reason: str) -> Shown:
    return Shown("none", note=reason)


def from_jpeg(buf: bytes, max_bytes: int) -> Shown:
    if len(buf) > max_bytes:
        return placeholder(f"frame of {len(buf):,} bytes is larger than the console shows ({max_bytes:,})")
    try:
        w, h, _ = jpeg_dims(buf)
    except RawError as exc:
        return placeholder(f"not a frame that can be shown: {exc.detail}")
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        return placeholder(f"frame claims {w}x{h} pixels; at most {MAX_SIDE} per side")
    return Shown("jpeg", buf, f"frame {w}x{h} as captured", w, h)


def from_window(arr: np.ndarray, max_bytes: int) -> Shown:
    """A sensor window (channels x time, or time) as an inline SVG line per channel."""
    a = np.asarray(arr, np.float32)
    if a.nbytes > max_bytes:
        return placeholder(f"window of {a.nbytes:,} bytes is larger than the console shows")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] < 2 or a.shape[0] > 16:
        return placeholder(f"window of shape {tuple(a.shape)} cannot be plotted")
    if not np.isfinite(a).all():
        return placeholder("window holds NaN or Inf")
    return Shown("svg", window_svg(a).encode(), f"window: {a.shape[0]} channel(s) x {a.shape[1]} steps",
                 480, 160)


def window_svg(a: np.ndarray, width: int = 480, height: int = 160) -> str:
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
    n = a.shape[1]
    idx = np.linspace(0, n - 1, min(n, PLOT_POINTS)).astype(int)
    lo, hi = float(a.min()), float(a.max())
    span = hi - lo or 1.0
    pad = 6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="#fff"/>']
    for c in range(a.shape[0]):
        xs = pad + idx / max(1, n - 1) * (width - 2 * pad)
        ys = height - pad - (a[c, idx] - lo) / span * (height - 2 * pad)
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        parts.append(f'<polyline fill="none" stroke="{colours[c % len(colours)]}" stroke-width="1.5" '
                     f'points="{pts}"><title>channel {c}</title></polyline>')
    parts.append(f'<text x="{pad}" y="12" font-size="10" fill="#555">{escape(f"{hi:.3g}")}</text>'
                 f'<text x="{pad}" y="{height - 2}" font-size="10" fill="#555">{escape(f"{lo:.3g}")}</text></svg>')
    return "".join(parts)


def from_input(x: np.ndarray) -> Shown:
    """The edge model's preprocessed input (C x H x W) as a PNG, when no raw sample came."""
    a = np.asarray(x, np.float32)
    if a.ndim != 3 or a.shape[0] not in (1, 3) or a.shape[1] * a.shape[2] > 512 * 512:
        return placeholder(f"features only: no raw sample, and an input of shape {tuple(a.shape)} is not an image")
    if not np.isfinite(a).all():
        return placeholder("the input holds NaN or Inf")
    lo, hi = float(a.min()), float(a.max())
    img = ((a - lo) / ((hi - lo) or 1.0) * 255).round().astype(np.uint8)
    img = img[0] if img.shape[0] == 1 else np.transpose(img[::-1], (1, 2, 0))  # model inputs are BGR like cv2
    return Shown("png", png(img), f"the edge model's input ({a.shape[1]}x{a.shape[2]}, preprocessed): "
                                  "this escalation carried no raw sample", a.shape[2], a.shape[1])


def png(img: np.ndarray) -> bytes:
    """A grey (H x W) or RGB (H x W x 3) uint8 image as PNG bytes (zlib only)."""
    h, w = img.shape[:2]
    colour = 2 if img.ndim == 3 else 0
    rows = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))
