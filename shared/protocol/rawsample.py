"""Raw samples on the wire: what the cloud sees instead of the edge's thumbnail.

A task's cloud contract (the manifest's ``cloud`` section) says how a device sends the sample it
captured, before any preprocessing: camera frames as JPEG at capture resolution (a 320x240 frame is
~10-26 KB, where the edge's own 3x48x64 float32 input is 36 KB), sensor windows as float16 or in
their raw dtype. Containers (``hard``, ``feat``, ``fused``) carry them as :class:`RawRows`:

- ``jpeg``: one uint8 tensor ``raw`` with the rows' JPEG files back to back, and ``raw_size`` (N,)
  int64, each row's length;
- ``tensor``: one tensor ``raw`` of shape (N, ...), a row per sample.

Decoding a JPEG from the network reads its frame header first and refuses dimensions beyond
:data:`MAX_SIDE` before OpenCV allocates anything (a 2 KB file can claim 65535x65535). Every refusal
is a :class:`RawError` with a stable ``reason`` for counters. OpenCV is imported only to encode or
decode JPEG, so window-only installs (and the bridge, which never decodes) need no cv2.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np

Encoding = Literal["jpeg", "float16", "raw"]  # what a task's cloud contract names
WireEncoding = Literal["jpeg", "tensor"]  # how rows sit in a container

MAX_SIDE = 4096  # pixels, either side of a decoded frame
# One frame. The container's own limits bound the message too: 4 MiB in all, and 1 MiB for one tensor,
# which is what a `jpeg` row set is (so a message carries at most 1 MiB of JPEG).
MAX_JPEG_BYTES = 1024 * 1024
# An event's snapshot (edge/{device}/snapshot/...): one retained JPEG, smaller than a raw row may be.
MAX_SNAPSHOT_BYTES = 256 * 1024
TENSOR_DTYPES = ("float16", "float32", "uint8", "int16", "uint16", "int32")


class RawError(ValueError):
    """A raw sample that cannot be used; ``reason`` is a short stable key for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class RawRows:
    """Raw samples of N rows, in one of the two wire layouts (see the module doc)."""

    encoding: WireEncoding
    data: np.ndarray  # jpeg: (B,) uint8, the files concatenated; tensor: (N, ...)
    sizes: np.ndarray | None = None  # jpeg: (N,) int64 bytes per row

    def __len__(self) -> int:
        return len(self.sizes) if self.encoding == "jpeg" else len(self.data)  # type: ignore[arg-type]

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def item(self, i: int) -> np.ndarray:
        """Row ``i``: its JPEG bytes as a uint8 array, or its tensor."""
        if self.encoding == "tensor":
            return self.data[i]
        sizes = self.sizes
        assert sizes is not None
        start = int(sizes[:i].sum())
        return self.data[start:start + int(sizes[i])]

    def take(self, keep: np.ndarray) -> RawRows:
        """The rows where the boolean mask ``keep`` is true."""
        if self.encoding == "tensor":
            return RawRows("tensor", self.data[keep])
        return RawRows.jpeg([self.item(i) for i in np.flatnonzero(keep)])

    @staticmethod
    def jpeg(files: list[np.ndarray | bytes]) -> RawRows:
        arrs = [np.frombuffer(f, np.uint8) if isinstance(f, (bytes, bytearray)) else np.asarray(f, np.uint8)
                for f in files]
        data = np.concatenate(arrs) if arrs else np.zeros(0, np.uint8)
        return RawRows("jpeg", data, np.array([len(a) for a in arrs], np.int64))

    @staticmethod
    def tensor(rows: np.ndarray) -> RawRows:
        return RawRows("tensor", np.ascontiguousarray(rows))

    # ---- containers ------------------------------------------------------------------
    def tensors(self) -> dict[str, np.ndarray]:
        if self.encoding == "jpeg":
            assert self.sizes is not None
            return {"raw": self.data, "raw_size": self.sizes.astype(np.int64)}
        return {"raw": self.data}

    @staticmethod
    def from_bundle(encoding: str, tensors, n: int) -> RawRows:
        """Check what a container holds for ``n`` rows; raises RawError (reason for counters)."""
        data = tensors.get("raw")
        if data is None:
            raise RawError("malformed", "meta names a raw encoding but there is no tensor 'raw'")
        if encoding == "jpeg":
            sizes = tensors.get("raw_size")
            if data.dtype != np.uint8 or data.ndim != 1:
                raise RawError("bad_dtype", f"jpeg rows must be one uint8 tensor, got {data.dtype} rank {data.ndim}")
            if sizes is None or sizes.dtype != np.int64 or sizes.shape != (n,):
                raise RawError("bad_shape", f"raw_size must be ({n},) int64")
            if n and (int(sizes.min()) < 1 or int(sizes.max()) > MAX_JPEG_BYTES):
                raise RawError("oversized" if int(sizes.max()) > MAX_JPEG_BYTES else "bad_shape",
                               f"row sizes {int(sizes.min())}..{int(sizes.max())} B")
            if int(sizes.sum()) != len(data):
                raise RawError("bad_shape", f"row sizes add up to {int(sizes.sum())}, the tensor has {len(data)} B")
            return RawRows("jpeg", data, sizes)
        if encoding == "tensor":
            if data.dtype.name not in TENSOR_DTYPES:
                raise RawError("bad_dtype", f"raw tensor dtype {data.dtype.name}; allowed {TENSOR_DTYPES}")
            if data.ndim < 2 or data.shape[0] != n:
                raise RawError("bad_shape", f"raw tensor {data.shape} for {n} rows")
            if data.dtype.kind == "f" and not np.isfinite(data).all():
                raise RawError("non_finite", "raw tensor holds NaN or Inf")
            return RawRows("tensor", data)
        raise RawError("bad_encoding", f"unknown raw encoding {encoding[:32]!r}")


def wire_encoding(encoding: Encoding) -> WireEncoding:
    return "jpeg" if encoding == "jpeg" else "tensor"


def encode(sample: np.ndarray, encoding: Encoding, quality: int = 75) -> np.ndarray:
    """One captured sample as it travels: JPEG bytes (uint8 array) of an HxWx3 (or HxW) frame, or the
    window in float16 / its own dtype."""
    if encoding == "jpeg":
        import cv2

        if sample.dtype != np.uint8 or sample.ndim not in (2, 3):
            raise RawError("bad_shape", f"jpeg needs an HxW(x3) uint8 frame, got {sample.dtype} {sample.shape}")
        ok, buf = cv2.imencode(".jpg", sample, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RawError("undecodable", "OpenCV could not encode the frame")
        return buf.reshape(-1)
    if encoding == "float16":
        return np.asarray(sample, np.float16)
    if encoding == "raw":
        a = np.asarray(sample)
        if a.dtype.name not in TENSOR_DTYPES:
            raise RawError("bad_dtype", f"raw encoding of dtype {a.dtype.name}; allowed {TENSOR_DTYPES}")
        return a
    raise RawError("bad_encoding", f"unknown encoding {encoding!r}")


def jpeg_dims(buf: bytes | np.ndarray) -> tuple[int, int, int]:
    """(width, height, components) from a JPEG's frame header, without decoding it."""
    b = bytes(buf) if not isinstance(buf, bytes) else buf
    if len(b) < 4 or b[0] != 0xFF or b[1] != 0xD8:
        raise RawError("undecodable", "not a JPEG (no SOI marker)")
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            raise RawError("undecodable", f"bad marker at byte {i}")
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack_from(">H", b, i + 2)
        if length < 2:
            raise RawError("undecodable", f"segment length {length} at byte {i}")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 10 > len(b):
                break
            h, w = struct.unpack_from(">HH", b, i + 5)
            return w, h, b[i + 9]
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise RawError("undecodable", "no JPEG frame header")


def decode_jpeg(buf: bytes | np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """An HxWx3 uint8 BGR frame (what cv2.VideoCapture returns) from JPEG bytes off the network."""
    if len(buf) > MAX_JPEG_BYTES:
        raise RawError("oversized", f"JPEG of {len(buf)} B > {MAX_JPEG_BYTES}")
    w, h, comps = jpeg_dims(buf)
    if not (0 < w <= max_side and 0 < h <= max_side):
        raise RawError("bad_shape", f"JPEG of {w}x{h}; at most {max_side} per side")
    if comps not in (1, 3):
        raise RawError("bad_shape", f"JPEG with {comps} components")
    import cv2

    frame = cv2.imdecode(np.frombuffer(bytes(buf), np.uint8), cv2.IMREAD_COLOR)
    if frame is None or frame.shape[:2] != (h, w):
        raise RawError("undecodable", "OpenCV could not decode the JPEG")
    return frame


def decode(item: np.ndarray, wire: WireEncoding) -> np.ndarray:
    """A row of :class:`RawRows` back to the sample a source produced (frames BGR uint8, windows float32)."""
    if wire == "jpeg":
        return decode_jpeg(item)
    return np.asarray(item, np.float32)
