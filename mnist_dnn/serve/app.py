"""`mnist-dnn serve`: draw digits in the browser, see trained models read them, keep them as a custom set.

    app = create_app(Path("runs"), Path("my_digits"))      # a Starlette app; TestClient(app) in tests
    sock = bind("127.0.0.1", 8000)
    warm_up(app)                                           # loads the default model before the first request
    run(app, sock)                                         # uvicorn, until Ctrl-C

The routes are short: they check the request, then call the stage modules (digits.digitize_drawing,
run_catalog, digit_set) in a worker thread. The page itself (mnist_dnn/serve/web: one HTML, one CSS,
one JS file, no build step) is package data.

Security model: the server binds loopback by default. Every request must name an allowed host in
its Host header (so a DNS-rebinding page cannot read it); a request a browser marks as coming from
another site (Sec-Fetch-Site: cross-site or same-site), or whose Origin header is not http://<its
Host>, is refused whatever its method (but a link's navigation to the page itself), so another
site's <img> cannot make the server draw figures or learn which runs exist; every request that
writes (POST, DELETE) must carry that Origin, which a browser sets and no page can forge. Requests
name runs and digit files; both are looked up in what the server listed, never joined onto a path.
Bodies are limited to MAX_BODY bytes and BODY_TIMEOUT_S seconds, drawings to MAX_DRAWING_SIDE
pixels a side, figures to MAX_FIGURE_RUNS runs; a connection that sends no whole request head
within IDLE_TIMEOUT_S is closed. Every refused request gets a 4xx with a JSON {"error": ...}.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import starlette.responses
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from uvicorn.protocols.http.h11_impl import H11Protocol

from mnist_dnn.core.backend import activate_backend
from mnist_dnn.core.config import resolve_backend
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.core.interrupts import Interrupted, poll
from mnist_dnn.handwriting.digit_set import DigitSet, UnknownDigit
from mnist_dnn.handwriting.digits import SIDE, digitize_drawing, read_photo_bytes
from mnist_dnn.handwriting.png_header import png_size
from mnist_dnn.runs import directory as runs
from mnist_dnn.serve import catalog as run_catalog

MAX_BODY = 2 * 1024 * 1024  # bytes: a 280 px canvas PNG is ~10-40 KB
MAX_FIGURE_RUNS = 12  # runs one overlay draws: more curves than this are unreadable, and each costs a second of CPU
BODY_TIMEOUT_S = 10.0  # a drawing's body arrives in milliseconds; a half-sent one must not hold a connection
IDLE_TIMEOUT_S = 5.0  # uvicorn's keep-alive, here also from connect to a request's complete head
MAX_DRAWING_SIDE = 2048  # pixels: checked from the PNG's one IHDR chunk (png_header) before decoding
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
WEB_DIR = Path(__file__).parent / "web"
_WRITING = ("POST", "PUT", "PATCH", "DELETE")
_OTHER_SITES = ("cross-site", "same-site")  # Sec-Fetch-Site values of a request another page made
ASCII_DIGITS = "0123456789"  # the labels labels.csv and eval --custom-csv accept


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def allowed_hosts(host: str) -> set[str]:
    """Host header names a request may use: loopback, the bound address, and this machine's names if wildcard."""
    names = {*LOOPBACK_NAMES, host.lower()}
    if host in WILDCARD_HOSTS:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        with contextlib.suppress(OSError):
            names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    names.discard("")
    return names


def create_app(
    runs_dir: Path, digits_dir: Path, hosts: set[str] | None = None, body_timeout: float = BODY_TIMEOUT_S
) -> Starlette:
    """The app for one runs directory (read) and one digits directory (written); the Keras backend must be active."""
    import keras  # noqa: F401  # imported here, at start-up, so no request pays for it

    if runs_dir.exists() and not runs_dir.is_dir():
        raise UserInputError(f"--runs-dir {runs_dir}: is a file (expected a directory of runs)")

    state = _State(runs_dir, DigitSet(digits_dir), hosts or set(LOOPBACK_NAMES))

    async def index(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html")

    async def list_runs(request: Request) -> Response:
        catalog, table = await run_in_threadpool(state.scored_catalog)
        catalog = state.shelf.with_known_problems(catalog)
        kept = {row["run"]: row["accuracy"] for row in table["runs"] if row.get("accuracy") is not None}
        return JSONResponse(
            {
                "runs_dir": str(runs_dir),
                "runs": [
                    {**info.as_json(), "kept_accuracy": kept.get(info.name)} for info in reversed(catalog.values())
                ],
                "kept_digits": len(table["digits"]),
                "default": run_catalog.default_run(catalog, kept),
            }
        )

    async def figure(request: Request) -> Response:
        names = request.query_params.getlist("run")
        if not names:
            raise HTTPException(400, "give one or more ?run=NAME")
        if len(names) > MAX_FIGURE_RUNS:
            raise HTTPException(400, f"{len(names)} runs: one figure overlays at most {MAX_FIGURE_RUNS}")
        infos = [state.run(name) for name in names]
        png = await run_in_threadpool(run_catalog.figure_png, infos)
        return Response(png, media_type="image/png")

    async def predict(request: Request) -> Response:
        info = state.run(request.query_params.get("run"))
        png = await _drawing(request, body_timeout)
        return JSONResponse(await run_in_threadpool(state.read, info, png))

    async def digits(request: Request) -> Response:
        kept = await run_in_threadpool(state.digits.state)
        return JSONResponse({"directory": str(digits_dir), **kept.as_json()})

    async def save_digit(request: Request) -> Response:
        label = request.query_params.get("label", "")
        if len(label) != 1 or label not in ASCII_DIGITS:  # isdigit() takes '²', '①' and '１', which eval refuses
            raise HTTPException(400, f"label: expected one digit 0-9, got {label!r}")
        png = await _drawing(request, body_timeout)
        name, grid = await run_in_threadpool(state.save, png, int(label))
        return JSONResponse({"saved": name, "label": int(label), "grid": grid}, status_code=201)

    async def delete_digit(request: Request) -> Response:
        name = request.query_params.get("file", "")
        await run_in_threadpool(state.digits.delete, name)
        return JSONResponse({"deleted": name})

    async def score(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(state.score))

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/runs", list_runs),
            Route("/api/runs/figure", figure),
            Route("/api/predict", predict, methods=["POST"]),
            Route("/api/digits", digits, methods=["GET"]),
            Route("/api/digits", save_digit, methods=["POST"]),
            Route("/api/digits", delete_digit, methods=["DELETE"]),
            Route("/api/score", score),
            Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
        ],
        middleware=[Middleware(_Guard, hosts=state.hosts)],
        exception_handlers={
            HTTPException: _http_error,
            UserInputError: _user_error,
            OSError: _storage_error,
            Exception: _internal_error,
        },
    )
    app.state.serve = state
    return app


class _State:
    """What the routes share: the runs found (refreshed on each listing), the loaded models, the digit set."""

    def __init__(self, runs_dir: Path, digits: DigitSet, hosts: set[str]):
        self.runs_dir = runs_dir
        self.digits = digits
        self.hosts = {name.lower() for name in hosts}
        self.shelf = run_catalog.ModelShelf()
        self._catalog: dict[str, run_catalog.RunInfo] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> dict[str, run_catalog.RunInfo]:
        catalog = run_catalog.find_runs(self.runs_dir)
        with self._lock:
            self._catalog = catalog
        return catalog

    def run(self, name: str | None) -> run_catalog.RunInfo:
        """The run called `name` in the latest listing (listed again once if it is new)."""
        if name and name not in self._catalog:
            self.refresh()
        return run_catalog.lookup(self._catalog, name)

    def read(self, info: run_catalog.RunInfo, png: bytes) -> dict[str, Any]:
        """One live update: the drawing digitized as `digitize --method mnist` does, and the ten probabilities."""
        started = time.perf_counter()
        grid = _grid(png)
        if grid is None:
            return {"empty": True}
        probabilities = self.shelf.predict(info, grid[np.newaxis])[0]
        return {
            "empty": False,
            "run": info.name,
            "grid": [int(v) for v in grid.ravel()],
            "probabilities": [float(p) for p in probabilities],
            "predicted": int(probabilities.argmax()) if np.isfinite(probabilities).all() else None,
            "ms": (time.perf_counter() - started) * 1000,
        }

    def save(self, png: bytes, label: int) -> tuple[str, list[int]]:
        grid = _grid(png)
        if grid is None:
            raise UserInputError("the drawing is empty: draw a digit before saving it")
        return self.digits.save(grid, label), [int(v) for v in grid.ravel()]

    def score(self) -> dict[str, Any]:
        return self.scored_catalog()[1]

    def scored_catalog(self) -> tuple[dict[str, run_catalog.RunInfo], dict[str, Any]]:
        """The runs listed afresh, and every usable one's reading of the kept digits (score_table's)."""
        kept = self.digits.state()
        readable = [d for d in kept.digits if "pixels" in d]
        images = np.array([d["pixels"] for d in readable], dtype=np.float32).reshape(-1, SIDE, SIDE)
        catalog = self.refresh()
        table = run_catalog.score_table(
            list(catalog.values()), self.shelf, [d["file"] for d in readable], [d["label"] for d in readable], images
        )
        return catalog, {**table, "problem": kept.problem}


def _grid(png: bytes) -> np.ndarray | None:
    brightness = read_photo_bytes(png, "drawing")
    return digitize_drawing(brightness)


async def _drawing(request: Request, timeout: float) -> bytes:
    """The request's PNG body, refused when it is not a PNG, too long or too large an image."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "image/png":
        raise HTTPException(415, f"expected Content-Type image/png, got {request.headers.get('content-type')!r}")
    body = await _body(request, timeout)
    try:
        size = png_size(io.BytesIO(body), "drawing")
    except UserInputError as exc:
        raise HTTPException(400, str(exc)) from None
    if size is None:
        raise HTTPException(400, "the body is not a PNG image")
    width, height = size  # the one IHDR's, which the decoder uses: not bytes 16-24 whatever chunk they are in
    if max(width, height) > MAX_DRAWING_SIDE:
        raise HTTPException(413, f"drawing is {width}x{height} pixels; at most {MAX_DRAWING_SIDE} a side")
    return body


async def _body(request: Request, timeout: float) -> bytes:
    """The body, read no further than MAX_BODY bytes whatever Content-Length claims, and for `timeout` seconds.

    A client that sends half a body and waits gets a 408 and its connection closed.
    """
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise HTTPException(413, f"request body over {MAX_BODY} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise HTTPException(413, f"request body over {MAX_BODY} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(
            408, f"request body not received within {timeout:g} s", headers={"connection": "close"}
        ) from None
    return b"".join(chunks)


class _Guard:
    """ASGI middleware: every request needs an allowed Host and no other site behind it; writes need its Origin."""

    def __init__(self, app, hosts: set[str]):
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            local = (scope.get("server") or ("", 0))[0]
            refusal = self._refusal(scope["method"], scope["path"], Headers(scope=scope), local)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, method: str, path: str, headers: Headers, local_address: str) -> Response | None:
        """Why a request is refused, if it is. `local_address` is the address the client connected to: with
        --host 0.0.0.0, a browser on another machine names it in Host, and no rebinding name can be it."""
        host = headers.get("host", "")
        if _hostname(host) not in self.hosts and _hostname(host) != local_address.lower():
            return _error(400, f"Host {host!r} is not served here")
        site = headers.get("sec-fetch-site", "").lower()
        opening_the_page = method == "GET" and path == "/" and headers.get("sec-fetch-mode") == "navigate"
        if site in _OTHER_SITES and not opening_the_page:  # a link elsewhere may open the page, which reads nothing
            return _error(403, f"a request from another site (Sec-Fetch-Site: {site}) is refused")
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host}".lower():
            return _error(403, f"Origin {origin!r} may not use this page (only its own origin may)")
        if origin is None and method in _WRITING:
            return _error(403, "a request that writes needs this page's Origin header")
        return None


def _hostname(host_header: str) -> str:
    """'127.0.0.1:8000' -> '127.0.0.1', '[::1]:8000' -> '::1'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class JSONResponse(starlette.responses.JSONResponse):
    """Starlette's JSON, with null for a NaN or infinite number (a diverged run's scores) instead of a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            runs.finite_or_null(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _error(exc.status_code, exc.detail)


async def _user_error(request: Request, exc: UserInputError) -> Response:
    if isinstance(exc, run_catalog.UnknownRun | UnknownDigit):
        return _error(404, str(exc))
    if isinstance(exc, run_catalog.UnusableModel):
        return _error(409, str(exc))
    return _error(422, str(exc))


async def _storage_error(request: Request, exc: OSError) -> Response:
    """A full disk or an unwritable --digits: the user's to fix, said in one line; any other OSError is ours."""
    problem = runs.storage_error(exc)
    if problem is None:
        raise exc
    return _error(507, str(problem))


async def _internal_error(request: Request, exc: Exception) -> Response:
    """Our bug: JSON like every other error, while uvicorn logs the traceback on the terminal."""
    return _error(500, f"internal error ({type(exc).__name__}); the server's terminal shows the traceback")


# --- running it -----------------------------------------------------------------------------------------------------


def start(
    runs_dir: Path, digits_dir: Path, host: str, port: int, backend: str | None
) -> tuple[Starlette, socket.socket]:
    """`serve`'s start-up: the socket first, so a busy port is refused before Keras and the backend load;
    then the app, its first model read once (warm_up)."""
    sock = bind(host, port)
    activate_backend(resolve_backend(backend))
    app = create_app(runs_dir, digits_dir, allowed_hosts(host))
    warm_up(app)
    return app, sock


def exposure_warning(host: str, digits_dir: Path) -> str:
    """What listening beyond this machine means, for a host that is not a loopback address."""
    return (
        f"Warning: listening on {host}: anyone who can reach this machine on that network can use this page, "
        f"read your runs and write into {digits_dir}."
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port), refused in one line if it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UserInputError(f"--host {host}: not an address this machine can listen on ({exc})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserInputError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def warm_up(app: Starlette) -> None:
    """Read one stroke with the default run's model, so the first drawing is read as fast as the rest.

    This loads the model and scipy's and Pillow's code paths before the URL is printed.
    """
    state: _State = app.state.serve
    stroke = np.ones((SIDE * 10, SIDE * 10), np.float32)
    stroke[40:240, 130:150] = 0.0
    grid = digitize_drawing(stroke)
    untried = dict(state.refresh())  # a copy: the listing itself stays whole
    while (name := run_catalog.default_run(untried)) is not None:
        try:
            state.shelf.predict(untried.pop(name), grid[np.newaxis])
            return
        except UserInputError:  # marked unusable (once, by the shelf): the next latest run becomes the default
            continue


def server_config(app: Starlette) -> uvicorn.Config:
    """uvicorn's settings for `serve`: quiet, idle connections closed after IDLE_TIMEOUT_S (see _TimedHTTP)."""
    return uvicorn.Config(
        app,
        http=_TimedHTTP,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        timeout_keep_alive=IDLE_TIMEOUT_S,
    )


class _TimedHTTP(H11Protocol):
    """uvicorn's HTTP/1.1, with its keep-alive timer also running from connect until a request's head is complete.

    uvicorn times a connection out only between requests: one that connects and sends
    nothing, or half a request line, would be held open for good. Here the timer starts
    when the connection is made and is not reset by each byte, only stopped (by uvicorn,
    in handle_events) once a whole request head has arrived.
    """

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.handle_events()


def run(app: Starlette, sock: socket.socket) -> None:
    """Serve until Ctrl-C (or SIGTERM), then raise Interrupted("Stopped.") once open requests are done."""
    try:
        uvicorn.Server(server_config(app)).run(sockets=[sock])
        poll()  # uvicorn shuts down first, then hands back the Ctrl-C it caught: pending here
    except KeyboardInterrupt:
        raise Interrupted("Stopped.") from None  # said once, as every interrupted command ends: exit 130
    finally:
        sock.close()
