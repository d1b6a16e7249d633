"""The console's web application (Starlette, served by uvicorn): pages, a JSON API, live events (SSE).

Every route but the login and the static files needs a session (a token login sets an HttpOnly,
SameSite=Strict cookie); every POST must carry the session's CSRF token in ``X-CSRF-Token``. Pages
are Jinja templates with autoescape; the data in them is fetched as JSON and put on the page by
``static/console.js`` as text (never as HTML), so a device-made string can never become markup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from lepton_console import views
from lepton_console.auth import COOKIE, CSRF_HEADER, Session, Sessions
from lepton_console.state import ConsoleState
from lepton_views import report
from shared.protocol import schemas
from shared.protocol.topics import DEVICE_RE, SEGMENT_RE
from shared.transport.mqtt import MqttError

HERE = Path(__file__).parent
COMMANDS = ("rollback", "thresholds", "rebirth")


class Actions(Protocol):
    """What the console does on the broker (lepton_console/service.py)."""

    name: str

    def label(self, lb: schemas.Labels) -> schemas.Labels: ...

    def command(self, device: str, cmd: schemas.Command) -> None: ...


class Timeline:
    """FleetStats.point() samples over time, for the live plots `lepton report` draws after a run."""

    def __init__(self, state: ConsoleState, every_s: float, maxlen: int = 1800) -> None:
        self.state = state
        self.every_s = every_s
        self.t0 = time.time()
        self.points: deque[dict[str, Any]] = deque(maxlen=maxlen)

    def sample(self) -> None:
        self.points.append(self.state.fleet.point())

    def svg(self, which: str) -> str:
        pts = list(self.points)
        if len(pts) < 2:
            return '<svg xmlns="http://www.w3.org/2000/svg" width="600" height="60"><text x="10" y="30">' \
                   'collecting: the plots start after two samples</text></svg>'
        w = report._window(len(pts), self.every_s)
        tasks = len({t for p in pts for t in p.get("joint", {})}) or 1
        if which in ("accuracy", "edge"):
            kind, title = ("joint", "joint (edge + cloud)") if which == "accuracy" else ("edge", "edge only")
            chart, _ = report.accuracy_chart(pts, self.t0, kind, title, tasks)
            return chart.render()
        pubs = [(t - self.t0, f"v{v} published") for (task, v), (t, _) in list(self.state.fleet.published.items())
                if t >= self.t0 - 1]
        return report.escalation_chart(pts, self.t0, w, pubs).render()


def _json_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > 16384:
        raise ValueError("request too large")
    obj = json.loads(raw or b"{}")
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    return obj


def build_app(state: ConsoleState, actions: Actions, sessions: Sessions, *, registry: Path | None = None,
              push_every_s: float = 1.0, stopping: Callable[[], bool] = lambda: False) -> Starlette:
    templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
    timeline = Timeline(state, push_every_s)

    def session(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(COOKIE))

    def page(name: str, title: str):
        async def handler(request: Request) -> Response:
            s = session(request)
            if s is None:
                return RedirectResponse("/login", 303)
            return templates.TemplateResponse(request, name, {"csrf": s.csrf, "title": title,
                                                              "publisher": actions.name,
                                                              "path": request.url.path,
                                                              **request.path_params})
        return handler

    async def login(request: Request) -> Response:
        token = request.query_params.get("token")
        if request.method == "POST":
            form = await request.form()
            token = str(form.get("token") or "")
        if token is None:
            return templates.TemplateResponse(request, "login.html", {"error": None, "title": "Log in"})
        s = sessions.login(token)
        if s is None:
            return templates.TemplateResponse(request, "login.html", {"error": "That token is not right.",
                                                                      "title": "Log in"}, status_code=403)
        resp = RedirectResponse("/", 303)
        resp.set_cookie(COOKIE, s.sid, httponly=True, samesite="strict")
        return resp

    def api(fn: Callable[[Request, Session], Any], post: bool = False):
        async def handler(request: Request) -> Response:
            s = session(request)
            if s is None:
                return JSONResponse({"error": "log in first"}, 401)
            body: dict[str, Any] = {}
            if post:
                if not sessions.csrf_ok(s, request.headers.get(CSRF_HEADER)):
                    return JSONResponse({"error": "missing or wrong CSRF token"}, 403)
                try:
                    body = _json_body(await request.body())
                except ValueError as exc:
                    return JSONResponse({"error": str(exc)}, 400)
            try:
                out = fn(request, s, body) if post else fn(request, s)
            except (KeyError, ValueError, TypeError) as exc:
                return JSONResponse({"error": f"bad request: {exc}"}, 400)
            except MqttError as exc:
                return JSONResponse({"error": f"broker: {exc}"}, 503)
            if isinstance(out, Response):
                return out
            return JSONResponse(out)
        return handler

    # ---- queue actions ---------------------------------------------------------------
    def queue(request: Request, s: Session) -> dict[str, Any]:
        out = views.queue_json(state, s.skipped)
        out["session"] = {"total": s.total, "per_class": dict(s.labels), "undo": len(s.undo)}
        return out

    def _labels_msg(it, label: int, supersedes: bool = False) -> schemas.Labels:
        return schemas.Labels(device=it.device, stream=it.stream, task=it.task,
                              items=[schemas.LabelItem(sample=it.sample, label=label)],
                              source=f"console:{actions.name}", supersedes=supersedes, ts=time.time())

    def _class_name(task: str, label: int) -> str:
        cls = state.classes(task)
        return cls[label] if 0 <= label < len(cls) else f"class {label}"

    def do_label(request: Request, s: Session, body: dict[str, Any]) -> Any:
        key, label = str(body["key"]), int(body["label"])
        with state.lock:
            it = state.items.get(key)
        if it is None:
            return JSONResponse({"error": "no longer in the queue (someone labelled it)"}, 409)
        n = len(state.classes(it.task)) or len(it.scores)
        if not 0 <= label < max(n, 1):
            raise ValueError(f"label {label} outside 0..{n - 1}")
        state.apply_labels(actions.label(_labels_msg(it, label)))
        s.labels[_class_name(it.task, label)] += 1
        s.undo.append(("label", key, label))
        s.skipped.discard(key)
        return {"ok": True}

    def do_none(request: Request, s: Session, body: dict[str, Any]) -> Any:
        key = str(body["key"])
        if not state.none_of_these(key, f"console:{actions.name}"):
            return JSONResponse({"error": "no longer in the queue"}, 409)
        s.undo.append(("none", key, -1))
        return {"ok": True}

    def do_skip(request: Request, s: Session, body: dict[str, Any]) -> Any:
        key = str(body["key"])
        s.skipped.add(key)
        s.undo.append(("skip", key, -1))
        return {"ok": True}

    def do_undo(request: Request, s: Session, body: dict[str, Any]) -> Any:
        if not s.undo:
            return JSONResponse({"error": "nothing to undo"}, 409)
        action, key, label = s.undo.pop()
        if action == "skip":
            s.skipped.discard(key)
        elif action == "none":
            state.restore(key)
        else:
            it = state.get(key)
            if it is not None:
                state.apply_labels(actions.label(_labels_msg(it, -1, supersedes=True)))  # retract it
                name = _class_name(it.task, label)
                s.labels[name] -= 1
                if s.labels[name] <= 0:
                    del s.labels[name]
        return {"ok": True, "undone": action, "key": key}

    def do_correct(request: Request, s: Session, body: dict[str, Any]) -> Any:
        key, label = str(body["key"]), int(body["label"])
        it = state.get(key)
        if it is None:
            return JSONResponse({"error": "unknown sample"}, 404)
        n = len(state.classes(it.task)) or len(it.scores)
        if not -1 <= label < max(n, 1):
            raise ValueError(f"label {label} outside -1..{n - 1}")
        state.apply_labels(actions.label(_labels_msg(it, label, supersedes=True)))
        if label < 0:
            state.none_of_these(key, f"console:{actions.name}")  # reviewed: none of these classes
        return {"ok": True}

    # ---- fleet and models ------------------------------------------------------------
    def do_command(request: Request, s: Session, body: dict[str, Any]) -> Any:
        name = str(body["name"])
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}")
        args = body.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError("args must be an object")
        cmd = schemas.Command(name=name, args=args, ts=time.time())
        if body.get("device"):
            targets = [str(body["device"])]
        else:
            task = str(body["task"])
            targets = [r.device for r in state.fleet.rows() if r.task == task]
        for d in targets:
            if not DEVICE_RE.match(d):
                raise ValueError("bad device id")
            actions.command(d, cmd)
        return {"ok": True, "devices": targets}

    def do_training(request: Request, s: Session, body: dict[str, Any]) -> Any:
        target = str(body["target"])
        dev, _, stream = target.partition("/")
        if not DEVICE_RE.match(dev) or (stream and not SEGMENT_RE.match(stream)):
            raise ValueError("target is a device id or device/stream")
        rate, seconds = float(body.get("rate", 0.1)), float(body.get("seconds", 600))
        if not (0 <= rate <= 1 and 0 <= seconds <= 86400):
            raise ValueError("rate within 0..1, seconds within 0..86400")
        state.set_training(target, rate, seconds)
        return {"ok": True, "training": {k: {"rate": r, "until": u} for k, (r, u) in state.training.items()}}

    def review(request: Request, s: Session) -> dict[str, Any]:
        q = request.query_params
        label = q.get("label")
        return views.review_json(state, q.get("task") or None, int(label) if label not in (None, "") else None)

    def sample(request: Request) -> Response:
        if session(request) is None:
            return Response("log in first", 401)
        it = state.get(request.path_params["key"])
        if it is None or it.shown.kind == "none":
            return Response("no sample", 404)
        return Response(it.shown.data, media_type=it.shown.media_type,
                        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    def snapshot(request: Request) -> Response:
        if session(request) is None:
            return Response("log in first", 401)
        pp = request.path_params
        s = state.snapshots.get(pp["device"], pp["stream"], pp["name"])
        if s is None:
            return Response("no snapshot", 404)
        return Response(s.jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    def plot(request: Request) -> Response:
        if session(request) is None:
            return Response("log in first", 401)
        which = request.path_params["which"]
        if which not in ("accuracy", "edge", "escalation"):
            return Response("no such plot", 404)
        return Response(report.standalone_svg(timeline.svg(which)), media_type="image/svg+xml",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    async def events(request: Request) -> Response:
        if session(request) is None:
            return Response("log in first", 401)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=200)

        def put(ev: dict[str, Any]) -> None:
            if not q.full():
                q.put_nowait(ev)

        def listener(ev: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(put, ev)

        state.listen(listener)

        async def stream():
            try:
                yield "retry: 1000\n\n"
                last_tick = 0.0
                while not stopping() and not await request.is_disconnected():
                    try:
                        ev = await asyncio.wait_for(q.get(), timeout=push_every_s)
                        yield f"data: {json.dumps(ev)}\n\n"
                    except asyncio.TimeoutError:
                        pass
                    now = time.monotonic()
                    if now - last_tick >= push_every_s:
                        last_tick = now
                        yield 'data: {"type": "tick"}\n\n'
            finally:
                state.unlisten(listener)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def ticker() -> None:
        while not stopping():
            timeline.sample()
            await asyncio.sleep(push_every_s)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.get_running_loop().create_task(ticker())
        yield
        task.cancel()

    routes = [
        Route("/login", login, methods=["GET", "POST"]),
        Route("/", page("queue.html", "Label queue")),
        Route("/review", page("review.html", "Review labels")),
        Route("/fleet", page("fleet.html", "Fleet")),
        Route("/device/{device}", page("device.html", "Device")),
        Route("/models", page("models.html", "Models")),
        Route("/api/queue", api(queue)),
        Route("/api/review", api(review)),
        Route("/api/fleet", api(lambda r, s: views.fleet_json(state))),
        Route("/api/device/{device}", api(lambda r, s: views.device_json(state, r.path_params["device"]))),
        Route("/api/models", api(lambda r, s: views.models_json(state, registry))),
        Route("/api/label", api(do_label, True), methods=["POST"]),
        Route("/api/none", api(do_none, True), methods=["POST"]),
        Route("/api/skip", api(do_skip, True), methods=["POST"]),
        Route("/api/undo", api(do_undo, True), methods=["POST"]),
        Route("/api/correct", api(do_correct, True), methods=["POST"]),
        Route("/api/command", api(do_command, True), methods=["POST"]),
        Route("/api/training", api(do_training, True), methods=["POST"]),
        Route("/sample/{key}", sample),
        Route("/plot/{which}.svg", plot),
        Route("/snapshot/{device}/{stream}/{name}.jpg", snapshot),
        Route("/events", events),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])
    app.state.timeline = timeline
    return app


class SecurityHeaders:
    """Pure ASGI middleware (live event streams pass through untouched): headers that keep a page from
    being framed, sniffed or made to run anything but the console's own script."""

    CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
           "frame-ancestors 'none'")

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                if headers.get("content-type", "").startswith("text/html"):
                    headers["Content-Security-Policy"] = self.CSP
            await send(message)

        await self.app(scope, receive, send_with_headers)
