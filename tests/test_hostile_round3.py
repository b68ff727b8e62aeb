"""Hostile-input round three (issue 24): the web app, the run folder's files and outputs.

Each test is named after the promise it keeps; docs/reliability-round3.md lists them with
the line a user sees. The fuzz tests run a fixed number of derandomized examples.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_dnn.cli.app import main
from mnist_dnn.core.errors import UserInputError
from mnist_dnn.figures import from_runs
from mnist_dnn.handwriting.digitize import read_photo, read_photo_bytes
from mnist_dnn.handwriting.png_header import png_size
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import lifecycle, records
from mnist_dnn.runs.files import RUN_FILES
from mnist_dnn.training import load

FUZZ = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _ihdr(width: int, height: int, colour: int = 6) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))


def _png(*chunks: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def fake_first_ihdr_png() -> bytes:
    """The red team's PNG: a 280x280 IHDR first, then the real 8900x8900 RGBA one and (a start of) its pixels."""
    rows = zlib.compress(bytes(1 + 8900 * 4) * 64, 9)
    return _png(_ihdr(280, 280), _ihdr(8900, 8900), _chunk(b"IDAT", rows), _chunk(b"IEND", b""))


def _one_line_user_error(read, *args):
    try:
        read(*args)
    except UserInputError as exc:
        assert "\n" not in str(exc)
        return str(exc)
    raise AssertionError("expected a UserInputError")


# --- S1: a PNG's size is its one real IHDR's -------------------------------------------------------------------------


def test_png_with_fake_first_ihdr_is_refused_before_decoding(tmp_path):
    data = fake_first_ihdr_png()
    assert "more than one IHDR" in _one_line_user_error(png_size, io.BytesIO(data), "drawing")
    assert "more than one IHDR" in _one_line_user_error(read_photo_bytes, data, "drawing")
    (tmp_path / "lying.png").write_bytes(data)  # predict and digitize read files through the same reader
    assert "more than one IHDR" in _one_line_user_error(read_photo, tmp_path / "lying.png")


def test_png_whose_first_chunk_is_not_ihdr_is_refused():
    data = _png(_chunk(b"tEXt", b"a\x00b"), _ihdr(28, 28), _chunk(b"IEND", b""))
    assert "first chunk is b'tEXt'" in _one_line_user_error(png_size, io.BytesIO(data), "drawing")


def test_png_size_is_the_ihdr_a_decoder_uses_and_leaves_the_stream_where_it_was():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (37, 5)).save(buffer, "PNG", pnginfo=None)
    buffer.seek(3)
    assert png_size(buffer, "x") == (37, 5) and buffer.tell() == 3
    assert png_size(io.BytesIO(b"GIF89a..."), "x") is None


_CHUNKS = st.sampled_from([b"IHDR", b"tEXt", b"PLTE", b"gAMA", b"IDAT", b"IEND", b"iCCP", b"zzzz"])


@FUZZ
@given(kinds=st.lists(_CHUNKS, max_size=6), sizes=st.lists(st.integers(0, 2**32 - 1), min_size=2, max_size=2))
def test_fuzz_png_chunk_order_gives_the_one_ihdr_or_one_line(kinds, sizes):
    chunks = [_ihdr(*sizes) if kind == b"IHDR" else _chunk(kind, b"\x00" * 3) for kind in kinds]
    data = _png(*chunks)
    try:
        size = png_size(io.BytesIO(data), "drawing")
    except UserInputError as exc:
        assert "\n" not in str(exc)
        return
    first_pixels = min(kinds.index(k) for k in (b"IDAT", b"IEND") if k in kinds)
    assert kinds[0] == b"IHDR" and kinds[:first_pixels].count(b"IHDR") == 1
    assert size == tuple(sizes)


# --- the web app ------------------------------------------------------------------------------------------------------

serve_tests = pytest.importorskip("tests.test_serve", reason="the serve extra is not installed")
ORIGIN, PNG, SEVEN, drawing = serve_tests.ORIGIN, serve_tests.PNG, serve_tests.SEVEN, serve_tests.drawing
listed_runs = serve_tests.listed_runs  # a module fixture: four runs whose models are never loaded


def _client(runs_root: Path, digits_dir: Path, **options):
    from starlette.testclient import TestClient

    from mnist_dnn.serve import app as serve

    return TestClient(serve.create_app(runs_root, digits_dir, **options), base_url=ORIGIN)


@pytest.fixture
def client(listed_runs, tmp_path):
    with _client(listed_runs, tmp_path / "digits") as test_client:
        yield test_client


def test_png_with_fake_first_ihdr_is_refused_on_every_route_that_takes_a_drawing(client, tmp_path):
    for path, params in (("/api/predict", {"run": "20260101T000000Z-paper"}), ("/api/digits", {"label": "7"})):
        response = client.post(path, params=params, content=fake_first_ihdr_png(), headers=PNG)
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "drawing: not a valid PNG (it has more than one IHDR chunk)"}
    assert not (tmp_path / "digits").exists()


@pytest.mark.parametrize("label", ["²", "①", "１", "٣", "7 ", ""])
def test_save_refuses_a_label_that_is_not_one_ascii_digit(client, tmp_path, label):
    response = client.post("/api/digits", params={"label": label}, content=drawing(SEVEN), headers=PNG)
    assert response.status_code == 400
    assert response.json() == {"error": f"label: expected one digit 0-9, got {label!r}"}
    assert not (tmp_path / "digits").exists()


def test_a_run_whose_metrics_hold_nan_does_not_break_the_runs_list(tmp_path):
    root = tmp_path / "runs"
    for name in ("20260101T000000Z-good", "20260102T000000Z-diverged"):
        serve_tests.make_run(root, name, model="garbage")
    (root / "20260102T000000Z-diverged" / runs.METRICS_FILE).write_text(
        '{"format_version": 1, "test_accuracy": NaN, "test_loss": Infinity, "epochs_completed": NaN}'
    )
    with _client(root, tmp_path / "digits") as client:
        response = client.get("/api/runs")
    assert response.status_code == 200, response.text
    listed = {run["name"]: run for run in response.json()["runs"]}
    assert listed["20260102T000000Z-diverged"]["test_accuracy"] is None
    assert listed["20260102T000000Z-diverged"]["epochs"] == 1  # from history.csv instead
    assert listed["20260101T000000Z-good"]["test_accuracy"] == 0.85


# --- H1, T2 and friends: whatever sits in a run folder, its readers answer or refuse in one line ---------------------


def _finished_run(run_dir: Path) -> Path:
    """A run directory as `train` leaves it (model aside): config, history, steps, metrics, status, statistics."""
    from mnist_dnn.core.config import config_to_toml, load_config
    from mnist_dnn.data.preprocess import Statistics, save_statistics

    run_dir.mkdir(parents=True)
    (run_dir / runs.CONFIG_FILE).write_text(config_to_toml(load_config(None)))
    (run_dir / runs.HISTORY_FILE).write_text(records.history_to_csv([{"epoch": 1, "loss": 0.5, "accuracy": 0.8}]))
    (run_dir / runs.STEPS_FILE).write_text("epoch,step,loss\n1,1,0.5\n")
    records.write_json(run_dir / runs.METRICS_FILE, {"format_version": 1, "test_accuracy": 0.9, "epochs_completed": 1})
    lifecycle.write_status(run_dir, "interrupted", kind=lifecycle.KIND_TRAIN)
    save_statistics(
        Statistics("standardize", np.zeros(784, np.float32), np.ones(784, np.float32)), run_dir / "preprocess.npz"
    )
    return run_dir


def _every_reader(run_dir: Path) -> None:
    """What serve, plot, eval, train --resume and export read of a run before any model is built."""
    from mnist_dnn.data.preprocess import load_statistics
    from mnist_dnn.serve import catalog as run_catalog
    from mnist_dnn.training.checkpoint import read_checkpoint

    for read in (
        lambda: run_catalog.find_runs(run_dir.parent),
        lambda: from_runs.read_for_figures([run_dir]),
        lambda: runs.resumable_config(run_dir),
        lambda: records.read_metrics(run_dir),
        lambda: lifecycle.check_run_format(run_dir),
        lambda: load_statistics(run_dir / "preprocess.npz"),
        lambda: read_checkpoint(run_dir / runs.CHECKPOINT_FILE),
        lambda: load.load_trained(run_dir),  # refused before Keras is asked: no model here is valid
    ):
        try:
            read()
        except UserInputError as exc:
            assert "\n" not in str(exc)


def _within(seconds: float, work) -> None:
    """Run `work` in a thread; fail (instead of hanging the suite) if it has not returned after `seconds`."""
    failure = []

    def target():
        try:
            work()
        except BaseException as exc:  # noqa: BLE001  # re-raised below, in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "a reader blocked on a run file"
    if failure:
        raise failure[0]


def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


READ_RUN_FILES = list(RUN_FILES)
HOSTILE_CONTENT = {
    "fifo": None,
    "directory": None,
    "nan": '{"format_version": 1, "status": "complete", "test_accuracy": NaN, "epochs_completed": NaN}',
    "deep json": _deep_json(200_000),
    "deep dict": '{"a":' * 50_000 + "1" + "}" * 50_000,
    "empty": "",
    "binary": "\x00\xff\x00PK\x03\x04",
    "a zip declaring a million-unit layer": None,
}


@pytest.mark.parametrize("name", READ_RUN_FILES)
def test_a_fifo_where_a_run_file_should_be_is_refused_in_one_line_not_a_hang(tmp_path, name):
    run_dir = _finished_run(tmp_path / "runs" / "20260101T000000Z-paper")
    (run_dir / name).unlink(missing_ok=True)
    os.mkfifo(run_dir / name)
    _within(60, lambda: _every_reader(run_dir))
    from mnist_dnn.core.errors import open_regular

    with pytest.raises(UserInputError, match=f"{name}: is a FIFO, not a regular file"):
        open_regular(run_dir / name, "a run file")


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir], ids=["fifo", "directory"])
def test_a_photo_that_is_a_fifo_or_a_directory_is_one_line_not_a_hang(tmp_path, make):
    """`predict x.png` and `digitize x.png` read photos by path: a FIFO there blocked them for good, deaf to SIGTERM."""
    make(tmp_path / "3.png")
    errors = []
    _within(60, lambda: errors.append(_one_line_user_error(read_photo, tmp_path / "3.png")))
    assert errors[0].endswith("not a regular file (expected a PNG or JPEG image)") or "is a directory" in errors[0]


@FUZZ
@given(
    name=st.sampled_from(READ_RUN_FILES),
    kind=st.sampled_from(sorted(HOSTILE_CONTENT)),
)
def test_fuzz_run_folder_files_give_a_result_or_one_line(tmp_path_factory, name, kind):
    run_dir = _finished_run(tmp_path_factory.mktemp("runs") / "20260101T000000Z-paper")
    target = run_dir / name
    target.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "a zip declaring a million-unit layer":
        _keras_zip(target, _dense_config(1_000_000, 10))
    else:
        target.write_text(HOSTILE_CONTENT[kind], encoding="latin-1")
    _within(60, lambda: _every_reader(run_dir))


# --- S3, T1: a saved model is checked from its config.json before Keras builds it -------------------------------------


def _dense_config(*units: int) -> str:
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 784]}}]
    layers += [{"class_name": "Dense", "config": {"name": f"d{i}", "units": n}} for i, n in enumerate(units)]
    return json.dumps({"module": "keras", "class_name": "Sequential", "config": {"name": "dnn", "layers": layers}})


def _keras_zip(path: Path, config: str, weights: bytes = b"\x00" * 4096) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", '{"keras_version": "3"}')
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", weights)
    return path


def test_a_model_declaring_a_huge_layer_is_refused_before_keras_builds_it(tmp_path):
    model = _keras_zip(tmp_path / "run" / runs.MODEL_FILE, _dense_config(1_000_000, 10))
    message = _one_line_user_error(load.load_trained, model.parent)
    assert message == (
        f"{model}: its layers declare 795,000,010 parameters (3,180,000,040 bytes) but it holds 4,096 bytes "
        "of weights; refused before building it"
    )


@pytest.mark.parametrize(
    ("layer", "declared"),
    [
        # 10**6 filters x 5x5 x 1 channel + 10**6 biases, then the Dense(10) layer's 784 x 10 + 10
        ({"class_name": "Conv2D", "config": {"filters": 1_000_000, "kernel_size": [5, 5]}}, "26,007,850"),
        ({"class_name": "Embedding", "config": {"input_dim": 1_000_000, "output_dim": 1_000}}, "1,000,007,850"),
    ],
)
def test_a_model_declaring_a_huge_convolution_or_embedding_is_refused_before_keras_builds_it(tmp_path, layer, declared):
    config = json.loads(_dense_config(10))
    config["config"]["layers"].insert(1, layer)
    model = _keras_zip(tmp_path / "run" / runs.MODEL_FILE, json.dumps(config))
    message = _one_line_user_error(load.load_trained, model.parent)
    assert message.startswith(f"{model}: its layers declare {declared} parameters") and "refused before" in message


@pytest.mark.parametrize("where", ["InputLayer", "build_config"])
def test_a_model_declaring_a_wide_input_is_refused_before_keras_builds_it(tmp_path, where):
    """Keras sizes a Dense kernel by its declared input: [None, 500000] into 400 units is 800 MB, counted as 1 MB."""
    config = json.loads(_dense_config(400, 10))
    first = config["config"]["layers"][1 if where == "build_config" else 0]
    if where == "build_config":
        first["build_config"] = {"input_shape": [None, 500_000]}
    else:
        first["config"]["batch_shape"] = [None, 500_000]
    model = _keras_zip(tmp_path / "run" / runs.MODEL_FILE, json.dumps(config), weights=b"\x00" * 1_300_000)
    message = _one_line_user_error(load.load_trained, model.parent)
    assert message.endswith(
        "declared 500000 wide, not 784; not a model from train"
        if where == "InputLayer"
        else "its layers declare 200,004,410 parameters (800,017,640 bytes) but it holds 1,300,000 bytes of weights; "
        "refused before building it"
    ), message


def test_a_model_whose_weights_would_not_fit_in_memory_is_refused_in_one_line(tmp_path):
    from mnist_dnn.core.memory import check_loading_memory

    check_loading_memory(25_450, Path("m.keras"), available=10**6)
    message = _one_line_user_error(check_loading_memory, 795_000_010, Path("m.keras"), 10**9)
    assert message.startswith("m.keras: loading it needs at least 6.4 GB (795,000,010 parameters x 4 bytes x 2)")


@pytest.mark.parametrize(
    "config",
    [
        _deep_json(200_000),
        '{"config":' * 200_000 + "1" + "}" * 200_000,
        "not json",
        _dense_config(0),
        _dense_config(-5),
    ],
)
def test_an_unreadable_model_config_is_one_line_not_a_recursion_error(tmp_path, config):
    model = _keras_zip(tmp_path / "run" / runs.MODEL_FILE, config)
    assert str(model) in _one_line_user_error(load.load_trained, model.parent)


@FUZZ
@given(units=st.lists(st.integers(1, 10**9), min_size=1, max_size=4), depth=st.integers(0, 3000))
def test_fuzz_declared_layers_give_a_refusal_or_a_model_that_fits(tmp_path_factory, units, depth):
    config = "[" * depth + _dense_config(*units) + "]" * depth
    model = _keras_zip(tmp_path_factory.mktemp("m") / runs.MODEL_FILE, config)
    try:
        load.check_model_archive(model)
    except UserInputError as exc:
        assert "\n" not in str(exc)
        return
    widths = [784, *units]
    assert sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False)) * 4 <= 4096


@pytest.mark.parametrize("command", [["eval", "--model"], ["predict", "custom_digits/3.csv", "--model"]])
def test_an_unreadable_model_is_one_line_in_eval_and_predict(tmp_path, command):
    from tests.conftest import REPO

    model = _keras_zip(tmp_path / "run" / runs.MODEL_FILE, _deep_json(200_000))
    args = [str(REPO / a) if a.startswith("custom_digits") else a for a in command]
    result = CliRunner().invoke(main, [*args, str(model.parent)])
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: {model}: its config.json is not readable JSON (nested too deep)\n"


def test_serve_starts_with_an_unreadable_latest_model_marks_it_unusable_and_serves_the_others(tmp_path):
    from mnist_dnn.serve import app as serve

    root = tmp_path / "runs"
    serve_tests.make_run(root, "20260101T000000Z-good", model="keras")
    bad = serve_tests.make_run(root, "20260102T000000Z-deep", model="none")
    _keras_zip(bad / runs.MODEL_FILE, _deep_json(200_000))
    app = serve.create_app(root, tmp_path / "digits")
    serve.warm_up(app)  # the latest run's model is read first: it must not stop the server
    from starlette.testclient import TestClient

    with TestClient(app, base_url=ORIGIN) as client:
        listing = client.get("/api/runs").json()
        assert listing["default"] == "20260101T000000Z-good"  # the latest run that loads
        deep = next(run for run in listing["runs"] if run["name"] == "20260102T000000Z-deep")
        assert deep["usable"] is False and "nested too deep" in deep["problem"]
        for _ in range(2):
            refused = client.post(
                "/api/predict", params={"run": "20260102T000000Z-deep"}, content=drawing(SEVEN), headers=PNG
            )
            assert refused.status_code == 409
            assert refused.json()["error"] == (
                f"run '20260102T000000Z-deep' is unusable: {bad / runs.MODEL_FILE}: its config.json is not readable "
                "JSON (nested too deep)"
            )
        read = client.post("/api/predict", params={"run": "20260101T000000Z-good"}, content=drawing(SEVEN), headers=PNG)
        assert read.status_code == 200 and len(read.json()["probabilities"]) == 10
        score = client.get("/api/score")
        assert score.status_code == 200


# --- S2: no other site, no endless figure, no connection held open ----------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"sec-fetch-site": "cross-site"}, "a request from another site (Sec-Fetch-Site: cross-site) is refused"),
        ({"sec-fetch-site": "same-site"}, "a request from another site (Sec-Fetch-Site: same-site) is refused"),
        (
            {"origin": "http://evil.example"},
            "Origin 'http://evil.example' may not use this page (only its own origin may)",
        ),
    ],
)
@pytest.mark.parametrize(
    "path", ["/api/runs", "/api/runs/figure?run=20260101T000000Z-paper", "/api/digits", "/api/score", "/"]
)
def test_cross_site_requests_are_refused_on_every_route_including_gets(client, path, headers, error):
    response = client.get(path, headers=headers)
    assert response.status_code == 403
    assert response.json() == {"error": error}


def test_a_link_on_another_site_may_open_the_page_but_not_the_api(client):
    navigate = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document"}
    assert client.get("/", headers=navigate).status_code == 200
    assert client.get("/api/runs", headers=navigate).status_code == 403
    assert client.get("/", headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}).status_code == 403


def test_same_origin_gets_still_work(client):
    for headers in ({}, {"sec-fetch-site": "same-origin", "origin": ORIGIN}, {"sec-fetch-site": "none"}):
        assert client.get("/api/runs", headers=headers).status_code == 200


def test_a_figure_overlays_a_bounded_number_of_runs(client):
    response = client.get("/api/runs/figure", params=[("run", "20260101T000000Z-paper")] * 1500)
    assert response.status_code == 400
    assert response.json() == {"error": "1500 runs: one figure overlays at most 12"}


def test_the_machines_own_address_is_accepted_as_host_and_a_rebinding_name_is_not(listed_runs, tmp_path):
    """With --host 0.0.0.0 a browser elsewhere names the address it connected to; the TestClient connects to it."""
    from starlette.testclient import TestClient

    from mnist_dnn.serve import app as serve

    app = serve.create_app(listed_runs, tmp_path / "digits")  # allowed names: loopback only
    with TestClient(app, base_url="http://192.168.1.5:8000") as remote:
        own = {"origin": "http://192.168.1.5:8000"}
        assert remote.get("/api/runs", headers=own).status_code == 200
        saved = remote.post("/api/digits", params={"label": "7"}, content=drawing(SEVEN), headers={**PNG, **own})
        assert saved.status_code == 201, saved.text
        rebound = remote.get("/api/runs", headers={"host": "evil.example:8000"})
        assert rebound.status_code == 400


@pytest.fixture
def live_server(listed_runs, tmp_path):
    """The app under uvicorn, as `serve` runs it, on a free loopback port; its body timeout shortened to 1 s."""
    import uvicorn

    from mnist_dnn.serve import app as serve

    app = serve.create_app(listed_runs, tmp_path / "digits", body_timeout=1.0)
    sock = serve.bind("127.0.0.1", 0)
    server = uvicorn.Server(serve.server_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    yield port
    server.should_exit = True
    thread.join(30)
    sock.close()


def _until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (generous bound: 60 s of silence fails)."""
    connection.settimeout(60)
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_a_half_sent_post_gets_408_and_its_connection_closed(live_server):
    host = f"127.0.0.1:{live_server}"
    head = (
        f"POST /api/predict?run=20260101T000000Z-paper HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
        "Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live_server)) as connection:
        connection.sendall(head.encode() + b"\x89PNG\r\n\x1a\n" + bytes(92))  # 100 of the 1,000 bytes promised
        answer = _until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'{"error":"request body not received within 1 s"}' in answer


@pytest.mark.parametrize("sent", [b"", b"GET /api/runs HTTP/1.1\r\nHost: 127"])
def test_an_idle_or_half_sent_request_head_is_closed_by_the_server(live_server, sent):
    with socket.create_connection(("127.0.0.1", live_server)) as connection:
        connection.sendall(sent)
        assert _until_closed(connection) == b""


# --- D1 and the Keep page: digits named by their path, only the page's own files deleted -----------------------------


def _csv_digit(path: Path, shade: int = 200) -> None:
    from mnist_dnn.handwriting.digits import grid_to_csv

    grid = np.zeros((28, 28), np.uint8)
    grid[8:20, 12:16] = shade
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(grid_to_csv(grid))


def test_digits_are_keyed_by_relative_path_so_a_same_named_top_level_file_is_never_deleted(client, tmp_path):
    digits_dir = tmp_path / "digits"
    _csv_digit(digits_dir / "sub" / "7.csv")
    _csv_digit(digits_dir / "7.csv", shade=90)
    (digits_dir / "labels.csv").write_text("file,label\nsub/7.csv,7\n")
    shown = client.get("/api/digits").json()
    assert [d["file"] for d in shown["digits"]] == ["sub/7.csv"] and shown["unlisted"] == {"7.csv": 7}
    top_level = (digits_dir / "7.csv").read_bytes()
    refused = client.delete("/api/digits", params={"file": "7.csv"}, headers={"origin": ORIGIN})
    assert refused.status_code == 404
    assert (digits_dir / "7.csv").read_bytes() == top_level
    saved = client.post("/api/digits", params={"label": "1"}, content=drawing(SEVEN), headers=PNG).json()["saved"]
    rows = (digits_dir / "labels.csv").read_text().splitlines()
    assert rows == ["file,label", "sub/7.csv,7", "7.csv,7", f"{saved},1"]  # the listed row kept as it was written
    from mnist_dnn.handwriting.digits import load_digits

    assert len(load_digits([digits_dir]).files) == 3  # what eval --custom-csv reads


def test_a_listed_file_the_page_did_not_write_is_not_deleted(client, tmp_path):
    digits_dir = tmp_path / "digits"
    _csv_digit(digits_dir / "sub" / "7.csv")
    (digits_dir / "labels.csv").write_text("file,label\nsub/7.csv,7\n")
    before = (digits_dir / "labels.csv").read_bytes()
    response = client.delete("/api/digits", params={"file": "sub/7.csv"}, headers={"origin": ORIGIN})
    assert response.status_code == 422
    assert response.json()["error"] == (
        "sub/7.csv: not saved by this page, so it is not deleted here; remove it and its row in labels.csv by hand"
    )
    assert (digits_dir / "sub" / "7.csv").exists() and (digits_dir / "labels.csv").read_bytes() == before


def test_a_hand_deleted_digit_hides_nothing_and_its_row_can_be_removed(client, tmp_path):
    digits_dir = tmp_path / "digits"
    names = [
        client.post("/api/digits", params={"label": d}, content=drawing(SEVEN), headers=PNG).json()["saved"]
        for d in "17"
    ]
    (digits_dir / names[0]).unlink()
    shown = client.get("/api/digits").json()
    assert [d["file"] for d in shown["digits"]] == names
    assert shown["digits"][0]["missing"] is True and "pixels" in shown["digits"][1]
    assert shown["problem"] == (
        f"{digits_dir / 'labels.csv'} lists {names[0]}, which is gone (eval would refuse the set); "
        "press Delete on it to remove its row"
    )
    assert client.delete("/api/digits", params={"file": names[0]}, headers={"origin": ORIGIN}).status_code == 200
    assert (digits_dir / "labels.csv").read_text() == f"file,label\n{names[1]},7\n"
    assert client.get("/api/digits").json()["problem"] is None


def test_an_image_pillow_cannot_identify_is_one_line_without_an_object_repr(client):
    data = _png(_ihdr(280, 280, colour=5), _chunk(b"IEND", b""))  # colour type 5 does not exist
    response = client.post("/api/predict", params={"run": "20260101T000000Z-paper"}, content=data, headers=PNG)
    assert response.status_code == 422
    assert response.json() == {"error": "drawing: not a readable PNG or JPEG image"}


def test_a_runs_dir_that_is_a_file_is_refused(tmp_path):
    from mnist_dnn.serve import app as serve

    (tmp_path / "runs").write_text("")
    with pytest.raises(UserInputError, match="^--runs-dir .*runs: is a file \\(expected a directory of runs\\)$"):
        serve.create_app(tmp_path / "runs", tmp_path / "digits")


def test_predict_on_a_run_with_nan_statistics_is_refused_not_read_as_zero(tmp_path):
    from mnist_dnn.data.preprocess import Statistics, save_statistics, statistics_for_run

    nan = np.full(784, np.nan, np.float32)
    save_statistics(Statistics("standardize", nan, np.ones(784, np.float32)), tmp_path / "preprocess.npz")
    message = _one_line_user_error(statistics_for_run, tmp_path, "standardize")
    assert message == (
        f"{tmp_path / 'preprocess.npz'}: holds NaN or infinite statistics (damaged); the run's model cannot be fed"
    )


# --- D3: an existing output that mnist-dnn did not write is replaced only with --overwrite ----------------------------


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_figures_carry_the_mark_that_lets_a_later_command_replace_them(tmp_path, fmt):
    from mnist_dnn.figures import plots
    from mnist_dnn.runs.outputs import written_by_this_tool

    figure = plots.plot_digits(np.zeros((1, 28, 28), np.uint8), np.array([3]), ["3.csv"], "t", None, grid=False)
    path = plots.save_figure(figure, tmp_path / f"fig.{fmt}")
    assert written_by_this_tool(path)
    (tmp_path / f"mine.{fmt}").write_bytes(b"\x89PNG\r\n\x1a\n my holiday photo")
    assert not written_by_this_tool(tmp_path / f"mine.{fmt}")


def test_eval_out_onto_a_file_it_did_not_write_is_refused_unless_overwrite(tmp_path):
    from mnist_dnn.runs.outputs import written_by_this_tool
    from mnist_dnn.training.evaluate import confusion_csv

    digits = tmp_path / "digits"
    _csv_digit(digits / "3.csv")
    before = (digits / "3.csv").read_bytes()
    model = _keras_zip(tmp_path / "run" / runs.MODEL_FILE, _deep_json(10))
    result = CliRunner().invoke(main, ["eval", "--model", str(model.parent), "--out", str(digits / "3.csv")])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: --out {digits / '3.csv'}: already exists and was not written by mnist-dnn; "
        "pass --overwrite to replace it\n"
    )
    assert (digits / "3.csv").read_bytes() == before
    (tmp_path / "confusion.csv").write_text(confusion_csv(np.eye(10, dtype=int)))
    assert written_by_this_tool(tmp_path / "confusion.csv")  # the previous eval's: replaced without asking
    result = CliRunner().invoke(
        main, ["eval", "--model", str(model.parent), "--out", str(digits / "3.csv"), "--overwrite"]
    )
    assert "already exists" not in result.output  # past the check: the unreadable model stops it instead
    assert (digits / "3.csv").read_bytes() == before


def test_eval_of_a_run_twice_replaces_its_own_confusion_matrix(tmp_path):
    """The first `eval --model RUN` writes RUN/confusion_matrix.csv; the second must not take it for an input."""
    from mnist_dnn.training.evaluate import confusion_csv

    model = _keras_zip(tmp_path / "run" / runs.MODEL_FILE, _deep_json(10))
    (model.parent / "confusion_matrix.csv").write_text(confusion_csv(np.eye(10, dtype=int)))
    result = CliRunner().invoke(main, ["eval", "--model", str(model.parent)])
    assert result.exit_code == 2
    assert "which this command reads" not in result.output  # past the check: the unreadable model stops it
    assert str(model) in result.output


def test_show_out_and_plot_into_a_folder_refuse_files_they_did_not_write(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n not ours")
    result = CliRunner().invoke(main, ["show", "--out", str(tmp_path / "photo.png")])
    assert result.exit_code == 2 and "was not written by mnist-dnn; pass --overwrite" in result.output
    run_dir = _finished_run(tmp_path / "runs" / "20260101T000000Z-paper")
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "fig3_activations.png").write_bytes(b"not ours")
    result = CliRunner().invoke(main, ["plot", "--activations", "--out", str(figures)])
    assert result.exit_code == 2, result.output
    assert "fig3_activations.png: already exists and was not written by mnist-dnn" in result.output
    assert (figures / "fig3_activations.png").read_bytes() == b"not ours"
    assert CliRunner().invoke(main, ["plot", str(run_dir)]).exit_code == 0  # a run's own folder: its figures
    assert CliRunner().invoke(main, ["plot", str(run_dir)]).exit_code == 0  # and again


@pytest.mark.slow
def test_an_unreadable_model_is_one_line_in_export(tmp_path):
    run_dir = serve_tests.make_run(tmp_path / "runs", "20260101T000000Z-deep", model="none")
    model = _keras_zip(run_dir / runs.MODEL_FILE, _deep_json(200_000))
    result = CliRunner().invoke(main, ["export", str(run_dir), "--format", "onnx"])
    assert result.exit_code == 2, result.output
    assert result.output == f"Error: {model}: its config.json is not readable JSON (nested too deep)\n"
    assert sorted(p.name for p in run_dir.iterdir() if "onnx" in p.name) == []
