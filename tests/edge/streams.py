"""Local stream servers for the source tests: an HTTP MJPEG camera that can go down and come back,
and a server that accepts connections and never answers. Loopback only; each stops by itself."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "frame"


def jpeg_frames(n: int = 8) -> list[bytes]:
    out = []
    for i in range(n):
        img = np.full((64, 64, 3), 20 * i % 255, np.uint8)
        cv2.putText(img, str(i), (16, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
        ok, buf = cv2.imencode(".jpg", img)
        assert ok
        out.append(buf.tobytes())
    return out


class MjpegCamera:
    """``http://127.0.0.1:PORT/video.mjpg`` at ``fps``; ``stop()`` takes it down (connections cut),
    ``start()`` brings it back on the same port. Records the Authorization headers it saw."""

    def __init__(self, fps: float = 20.0, max_seconds: float = 120.0) -> None:
        self.fps = fps
        self.frames = jpeg_frames()
        self.port = 0
        self.auth: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._up = threading.Event()
        self._deadline = time.monotonic() + max_seconds  # never outlives a test that forgot it

    def start(self) -> MjpegCamera:
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                cam.auth.append(self.headers.get("Authorization", ""))
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                i = 0
                try:
                    while cam._up.is_set() and time.monotonic() < cam._deadline:
                        jpg = cam.frames[i % len(cam.frames)]
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(jpg)}\r\n\r\n".encode() + jpg + b"\r\n")
                        self.wfile.flush()
                        i += 1
                        time.sleep(1.0 / cam.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._up.set()
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._up.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/video.mjpg"


class SilentServer:
    """Accepts TCP connections and never sends a byte: what a wedged camera looks like."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(c)
            self.accepted.set()

    def close(self) -> None:
        for c in self._conns:
            c.close()
        self.sock.close()
