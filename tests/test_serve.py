"""`mnist-dnn serve` through Starlette's TestClient: what each route reads, writes and refuses.

The models here are real Keras models saved the way `train` saves them, with untrained
weights: the API is checked against `predict`/`eval`'s own code path, not against fixed
numbers. The browser tests (tests/test_serve_browser.py) use a model trained on MNIST.
"""

from __future__ import annotations

import importlib.util
import io
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_dnn.core.config import apply_overrides, config_to_toml, load_config
from mnist_dnn.handwriting.digits import (
    LABELS_FILE,
    digitize,
    digitize_drawing,
    grid_to_csv,
    load_digits,
    read_photo_bytes,
)
from mnist_dnn.runs import directory as runs
from mnist_dnn.training.load import load_trained
from tests.conftest import REPO, mnist_dnn_command

starlette_testclient = pytest.importorskip("starlette.testclient", reason="the serve extra is not installed")

HOST = "127.0.0.1:8000"
ORIGIN = f"http://{HOST}"
PNG = {"content-type": "image/png", "origin": ORIGIN}
EVIL = "http://evil.example"
SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]
ONE = [(0.5, 0.15), (0.5, 0.85)]
WEB_FILES = ("index.html", "app.js", "style.css")


def drawing(points, side: int = 280, width: int = 20) -> bytes:
    """A canvas-like PNG: RGBA, black strokes on opaque white."""
    image = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    ImageDraw.Draw(image).line([(x * side, y * side) for x, y in points], fill=(0, 0, 0, 255), width=width)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def expected_grid(png: bytes) -> np.ndarray:
    return digitize_drawing(read_photo_bytes(png, "drawing"))


def make_run(root: Path, name: str, status: str = "complete", seed: int = 0, model: str = "keras", **overrides):
    """A run directory as `train` leaves it, with an untrained model (weights from `seed`)."""
    import keras

    from mnist_dnn.training.model import build_model

    run_dir = root / name
    run_dir.mkdir(parents=True)
    cfg = apply_overrides(load_config(None), {"train.epochs": 1, **overrides})
    (run_dir / runs.CONFIG_FILE).write_text(config_to_toml(cfg))
    if model == "keras":
        keras.utils.set_random_seed(seed)
        runs.save_model(build_model(cfg.model), run_dir / runs.MODEL_FILE)
    elif model == "garbage":
        (run_dir / runs.MODEL_FILE).write_bytes(b"not a zip file")
    (run_dir / runs.HISTORY_FILE).write_text(
        "epoch,loss,accuracy,val_loss,val_accuracy,epoch_time_s\n1,0.5,0.8,0.4,0.85,1.0\n"
    )
    runs.write_status(run_dir, status)
    if status == "complete":
        runs.write_json(
            run_dir / runs.METRICS_FILE,
            {"format_version": 1, "test_accuracy": 0.85, "test_loss": 0.4, "epochs_completed": 1},
        )
    return run_dir


def _four_runs(root: Path, model: str) -> Path:
    make_run(root, "20260101T000000Z-paper", seed=1, model=model)
    make_run(root, "20260102T000000Z-lr", seed=2, model=model, **{"optimizer.learning_rate": 0.01})
    make_run(root, "20260103T000000Z-broken", model="garbage")
    make_run(root, "20260104T000000Z-running", status="running", model="none")
    return root


@pytest.fixture(scope="module")
def listed_runs(tmp_path_factory):
    """Runs to list and look up, whose model files are never loaded (placeholders): no model is built."""
    return _four_runs(tmp_path_factory.mktemp("listed-runs"), model="garbage")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """The same runs with real (untrained) Keras models for the tests that read drawings with them."""
    return _four_runs(tmp_path_factory.mktemp("runs"), model="keras")


def _client(runs_root: Path, digits_dir: Path):
    from mnist_dnn.serve import app as serve

    return starlette_testclient.TestClient(serve.create_app(runs_root, digits_dir), base_url=ORIGIN)


@pytest.fixture
def client(listed_runs, tmp_path):
    with _client(listed_runs, tmp_path / "digits") as test_client:
        yield test_client


@pytest.fixture
def model_client(runs_dir, tmp_path):
    with _client(runs_dir, tmp_path / "digits") as test_client:
        yield test_client


def files_under(directory: Path) -> dict[str, bytes]:
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_predict_reads_the_drawing_as_digitize_mnist_and_the_model_as_predict(model_client, runs_dir):
    from mnist_dnn.training.evaluate import digit_probabilities

    png = drawing(SEVEN)
    response = model_client.post("/api/predict", params={"run": "20260102T000000Z-lr"}, content=png, headers=PNG)
    assert response.status_code == 200
    result = response.json()
    grid = expected_grid(png)
    assert result["grid"] == [int(v) for v in grid.ravel()]
    assert grid.max() == 255 and grid[0].max() == 0  # dark ink on white read as ink, the padding as paper
    reference = digit_probabilities(load_trained(runs_dir / "20260102T000000Z-lr"), grid[np.newaxis])[0]
    np.testing.assert_allclose(result["probabilities"], reference, atol=1e-5)
    assert result["predicted"] == int(np.argmax(reference))
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_strokes_touching_the_edge_are_still_read_as_ink(model_client):
    """A 0 drawn along the pad's edges: a border that is mostly ink must not flip what is ink and what is paper."""
    png = drawing([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)], width=40)
    response = model_client.post("/api/predict", params={"run": "20260101T000000Z-paper"}, content=png, headers=PNG)
    result = response.json()
    grid = np.array(result["grid"]).reshape(28, 28)
    assert grid[9:21, 9:21].max() == 0  # the inside of the ring is paper
    assert (grid == 255).sum() > 60  # the ring is ink
    guessed = digitize(read_photo_bytes(png, "drawing"), "mnist")  # what letting the border guess would give
    assert guessed[14, 14] == 255


def test_empty_canvas_is_an_empty_state_not_an_error(client):
    response = client.post("/api/predict", params={"run": "20260101T000000Z-paper"}, content=drawing([]), headers=PNG)
    assert response.status_code == 200
    assert response.json() == {"empty": True}


def test_save_writes_the_paper_csv_and_appends_to_labels_csv(client, tmp_path):
    digits_dir = tmp_path / "digits"
    seven, one = drawing(SEVEN), drawing(ONE)
    first = client.post("/api/digits", params={"label": "7"}, content=seven, headers=PNG)
    second = client.post("/api/digits", params={"label": "1"}, content=one, headers=PNG)
    assert (first.status_code, second.status_code) == (201, 201)
    assert (first.json()["saved"], second.json()["saved"]) == ("7-001.csv", "1-002.csv")
    assert (digits_dir / "7-001.csv").read_bytes() == grid_to_csv(expected_grid(seven)).encode()
    assert (digits_dir / "1-002.csv").read_bytes() == grid_to_csv(expected_grid(one)).encode()
    assert (digits_dir / LABELS_FILE).read_text() == "file,label\n7-001.csv,7\n1-002.csv,1\n"
    kept = load_digits([digits_dir])  # exactly what `eval --custom-csv DIR` reads
    assert list(kept.labels) == [7, 1]
    np.testing.assert_array_equal(kept.images[0], expected_grid(seven))
    listing = client.get("/api/digits").json()
    assert [(d["file"], d["label"]) for d in listing["digits"]] == [("7-001.csv", 7), ("1-002.csv", 1)]
    assert listing["digits"][0]["pixels"] == [int(v) for v in expected_grid(seven).ravel()]


def test_delete_removes_the_file_and_its_row(client, tmp_path):
    digits_dir = tmp_path / "digits"
    for label, points in (("7", SEVEN), ("1", ONE)):
        client.post("/api/digits", params={"label": label}, content=drawing(points), headers=PNG)
    response = client.delete("/api/digits", params={"file": "7-001.csv"}, headers={"origin": ORIGIN})
    assert response.status_code == 200
    assert not (digits_dir / "7-001.csv").exists()
    assert (digits_dir / LABELS_FILE).read_text() == "file,label\n1-002.csv,1\n"
    client.delete("/api/digits", params={"file": "1-002.csv"}, headers={"origin": ORIGIN})
    assert not (digits_dir / LABELS_FILE).exists()  # a labels.csv with a header only would be refused by eval
    assert client.get("/api/digits").json()["digits"] == []


def test_runs_list_status_differences_and_the_latest_complete_default(client):
    listing = client.get("/api/runs").json()
    by_name = {run["name"]: run for run in listing["runs"]}
    assert set(by_name) == {
        "20260101T000000Z-paper",
        "20260102T000000Z-lr",
        "20260103T000000Z-broken",
        "20260104T000000Z-running",
    }
    assert by_name["20260102T000000Z-lr"]["differences"] == {"train.epochs": "1", "optimizer.learning_rate": "0.01"}
    assert by_name["20260101T000000Z-paper"]["differences"] == {"train.epochs": "1"}
    assert by_name["20260101T000000Z-paper"]["test_accuracy"] == 0.85
    assert by_name["20260101T000000Z-paper"]["epochs"] == 1
    assert by_name["20260104T000000Z-running"]["status"] == "running"
    assert not by_name["20260104T000000Z-running"]["usable"]
    assert listing["default"] == "20260103T000000Z-broken"  # the latest complete run, until it fails to load


@pytest.mark.slow
def test_a_model_that_fails_to_load_is_shown_unusable_not_a_crash(model_client):
    png = drawing(SEVEN)
    response = model_client.post("/api/predict", params={"run": "20260103T000000Z-broken"}, content=png, headers=PNG)
    assert response.status_code == 409
    assert "unusable" in response.json()["error"] and "not a readable Keras model" in response.json()["error"]
    ok = model_client.post("/api/predict", params={"run": "20260101T000000Z-paper"}, content=png, headers=PNG)
    assert ok.status_code == 200


@pytest.mark.slow
def test_score_table_is_every_usable_run_on_every_saved_digit(model_client, runs_dir, tmp_path):
    from mnist_dnn.training.evaluate import digit_probabilities

    for label, points in (("7", SEVEN), ("1", ONE), ("4", SEVEN)):
        model_client.post("/api/digits", params={"label": label}, content=drawing(points), headers=PNG)
    table = model_client.get("/api/score").json()
    kept = load_digits([tmp_path / "digits"])
    assert [d["file"] for d in table["digits"]] == ["7-001.csv", "1-002.csv", "4-003.csv"]
    rows = {row["run"]: row for row in table["runs"]}
    assert set(rows) == {"20260101T000000Z-paper", "20260102T000000Z-lr", "20260103T000000Z-broken"}
    assert "unusable" in rows["20260103T000000Z-broken"]["error"]
    missed: dict[str, int] = {}
    for name in ("20260101T000000Z-paper", "20260102T000000Z-lr"):
        read = digit_probabilities(load_trained(runs_dir / name), kept.images).argmax(axis=1)
        assert rows[name]["predicted"] == [int(p) for p in read]
        assert rows[name]["correct"] == [bool(r == label) for r, label in zip(read, kept.labels, strict=True)]
        assert rows[name]["accuracy"] == pytest.approx(np.mean(read == kept.labels))
        for file, r, label in zip(table["digits"], read, kept.labels, strict=True):
            if r != label:
                missed[file["file"]] = missed.get(file["file"], 0) + 1
    assert {m["file"]: m["missed_by"] for m in table["most_missed"]} == missed
    assert [m["missed_by"] for m in table["most_missed"]] == sorted(missed.values(), reverse=True)
    assert "4-003.csv" in missed  # a 7 labelled 4 is missed by every model that reads it right


def test_an_existing_directory_with_unlisted_csvs_is_adopted_by_name(listed_runs, tmp_path):

    digits_dir = tmp_path / "mine"
    digits_dir.mkdir()
    for name in ("3.csv", "8.csv"):
        (digits_dir / name).write_bytes((REPO / "custom_digits" / name).read_bytes())
    with _client(listed_runs, digits_dir) as client:
        listing = client.get("/api/digits").json()
        assert listing["unlisted"] == {"3.csv": 3, "8.csv": 8} and listing["problem"] is None
        assert client.post("/api/digits", params={"label": "7"}, content=drawing(SEVEN), headers=PNG).status_code == 201
    assert (digits_dir / LABELS_FILE).read_text() == "file,label\n3.csv,3\n8.csv,8\n7-001.csv,7\n"
    assert list(load_digits([digits_dir]).labels) == [3, 8, 7]


def test_an_unlisted_csv_without_a_digit_in_its_name_stops_saving(listed_runs, tmp_path):

    digits_dir = tmp_path / "mine"
    digits_dir.mkdir()
    (digits_dir / "sketch.csv").write_bytes((REPO / "custom_digits" / "3.csv").read_bytes())
    before = files_under(digits_dir)
    with _client(listed_runs, digits_dir) as client:
        assert "sketch.csv" in client.get("/api/digits").json()["problem"]
        response = client.post("/api/digits", params={"label": "7"}, content=drawing(SEVEN), headers=PNG)
    assert response.status_code == 422
    assert "sketch.csv" in response.json()["error"] and "labels.csv" in response.json()["error"]
    assert files_under(digits_dir) == before


def _too_large_png() -> bytes:
    image = Image.new("L", (4000, 1), 255)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


REFUSALS = {
    "run name with ../": ("post", "/api/predict", {"run": "../runs/20260101T000000Z-paper"}, PNG, "seven", 404),
    "absolute run path": ("post", "/api/predict", {"run": "/etc"}, PNG, "seven", 404),
    "unknown run": ("post", "/api/predict", {"run": "nope"}, PNG, "seven", 404),
    "no run": ("post", "/api/predict", {}, PNG, "seven", 404),
    "oversized body": ("post", "/api/digits", {"label": "7"}, PNG, "huge", 413),
    "too many pixels": ("post", "/api/digits", {"label": "7"}, PNG, "wide", 413),
    "wrong content type": ("post", "/api/digits", {"label": "7"}, {**PNG, "content-type": "text/plain"}, "seven", 415),
    "JSON body": ("post", "/api/digits", {"label": "7"}, {**PNG, "content-type": "application/json"}, "json", 415),
    "not a PNG": ("post", "/api/digits", {"label": "7"}, PNG, "text", 400),
    "label 10": ("post", "/api/digits", {"label": "10"}, PNG, "seven", 400),
    "label x": ("post", "/api/digits", {"label": "x"}, PNG, "seven", 400),
    "empty drawing saved": ("post", "/api/digits", {"label": "7"}, PNG, "blank", 422),
    "delete ../": ("delete", "/api/digits", {"file": "../digits/labels.csv"}, {"origin": ORIGIN}, None, 404),
    "delete labels.csv": ("delete", "/api/digits", {"file": "labels.csv"}, {"origin": ORIGIN}, None, 404),
    "figure of ../": ("get", "/api/runs/figure", {"run": ".."}, {}, None, 404),
    "no Origin": ("post", "/api/digits", {"label": "7"}, {"content-type": "image/png"}, "seven", 403),
    "foreign Origin": ("post", "/api/digits", {"label": "7"}, {**PNG, "origin": EVIL}, "seven", 403),
    "foreign Origin delete": ("delete", "/api/digits", {"file": "7-001.csv"}, {"origin": EVIL}, None, 403),
    "rebinding Host": ("post", "/api/digits", {"label": "7"}, {**PNG, "host": "evil.example:8000"}, "seven", 400),
    "rebinding Host read": ("get", "/api/digits", {}, {"host": "evil.example:8000"}, None, 400),
    "unknown route": ("get", "/api/nothing", {}, {}, None, 404),
    "static ../": ("get", "/static/../serve.py", {}, {}, None, 404),
    "wrong method": ("put", "/api/digits", {}, {"origin": ORIGIN}, None, 405),
}
BODIES = {
    "seven": lambda: drawing(SEVEN),
    "huge": lambda: b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024),
    "wide": _too_large_png,
    "json": lambda: b'{"label": 7}',
    "text": lambda: b"hello, this is not an image at all",
    "blank": lambda: drawing([]),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_malformed_requests_get_a_4xx_json_error_and_write_nothing(client, tmp_path, case):
    method, path, params, headers, body, status = REFUSALS[case]
    client.post("/api/digits", params={"label": "7"}, content=drawing(SEVEN), headers=PNG)  # something to protect
    before = files_under(tmp_path)
    kwargs = {"content": BODIES[body]()} if body else {}
    response = client.request(method, path, params=params, headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"], str) and "Traceback" not in response.text
    assert files_under(tmp_path) == before


def _save_many(digits_dir: str, shade: int, count: int, start_at: float) -> list[str]:
    from mnist_dnn.handwriting.digit_set import DigitSet

    grid = np.zeros((28, 28), dtype=np.uint8)
    grid[10:18, 10:18] = shade
    time.sleep(max(0.0, start_at - time.time()))  # both processes start saving at the same moment
    return [DigitSet(Path(digits_dir)).save(grid, 7) for _ in range(count)]


@pytest.mark.slow
def test_two_writers_saving_at_once_lose_nothing(tmp_path):
    """Two processes (as two tabs' requests, or two servers) saving 7s into one directory at the same time."""
    digits_dir = tmp_path / "digits"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        start_at = time.time() + 4  # after both spawned interpreters have imported numpy
        saved = pool.starmap(_save_many, [(str(digits_dir), 100, 40, start_at), (str(digits_dir), 200, 40, start_at)])
    names = saved[0] + saved[1]
    assert len(set(names)) == 80
    kept = load_digits([digits_dir])
    assert sorted(f.name for f in kept.files) == sorted(names)
    assert sorted(kept.images[:, 14, 14].tolist()) == [100] * 40 + [200] * 40  # no file written over another


@pytest.mark.slow
def test_help_imports_no_web_framework():
    code = (
        "import sys\n"
        "from mnist_dnn.cli.app import main\n"
        "for args in (['--help'], ['serve', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "loaded = ('starlette', 'uvicorn', 'anyio', 'keras', 'jax', 'tensorflow')\n"
        "print(sorted(m for m in loaded if m in sys.modules), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert "mnist-dnn serve --runs-dir runs --digits my_digits" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"


def test_a_digits_directory_that_is_or_sits_under_a_file_is_refused(listed_runs, tmp_path):
    from mnist_dnn.core.errors import UserInputError
    from mnist_dnn.serve import app as serve

    (tmp_path / "digits").write_text("not a directory")
    for digits_dir in (tmp_path / "digits", tmp_path / "digits" / "under" / "it"):
        with pytest.raises(UserInputError, match=f"{tmp_path / 'digits'} is a file"):
            serve.create_app(listed_runs, digits_dir)


def _screenshot_helpers():
    spec = importlib.util.spec_from_file_location("serve_screenshots", REPO / "docs" / "serve" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_another_host_warns_and_ctrl_c_stops_cleanly(tmp_path):
    helpers = _screenshot_helpers()
    process, url = helpers.start_server(tmp_path / "no-runs-yet", tmp_path / "digits", "--host", "0.0.0.0")
    try:
        assert url.startswith("http://127.0.0.1:")
        assert b'<canvas id="pad"' in urllib.request.urlopen(url, timeout=30).read()
        listing = json.loads(urllib.request.urlopen(f"{url}api/runs", timeout=30).read())
        assert listing["runs"] == [] and listing["default"] is None  # no runs: an empty page, not a crash
    finally:
        status, err = helpers.stop_server(process)
    assert status == 130  # interrupted, as every command stopped by Ctrl-C
    assert "Warning: listening on 0.0.0.0: anyone who can reach this machine" in err
    assert "Stopped." in err and "Traceback" not in err
    assert "Interrupted." not in err  # one word for one Ctrl-C
    assert "no-runs-yet does not exist yet; runs trained into it appear on the Runs page" in err


@pytest.mark.slow
def test_a_busy_port_is_refused_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [*mnist_dnn_command(), "serve", "--port", str(port), "--digits", str(tmp_path / "d")]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr == f"Error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)\n"
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_a_wheel_built_from_the_project_serves_the_page(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "mnist_dnn", source / "mnist_dnn", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, str(source), "--wheel-dir", str(wheels)], check=True, capture_output=True)
    (wheel,) = wheels.glob("mnist_dnn-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        assert {f"mnist_dnn/serve/web/{name}" for name in WEB_FILES} <= set(archive.namelist())
        archive.extractall(site)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import mnist_dnn\n"
        "from mnist_dnn.core.backend import activate_backend\n"
        "from mnist_dnn.core.config import resolve_backend\n"
        "activate_backend(resolve_backend(None))\n"
        "from mnist_dnn.serve import app as serve\n"
        "from starlette.testclient import TestClient\n"
        "client = TestClient(serve.create_app(Path('runs'), Path('digits')), base_url='http://127.0.0.1:8000')\n"
        "pages = {path: client.get(path) for path in ('/', '/static/app.js', '/static/style.css')}\n"
        "print(json.dumps({'module': mnist_dnn.__file__,\n"
        "                  'pages': {p: [r.status_code, r.text] for p, r in pages.items()}}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["module"].startswith(str(site))  # the wheel's copy, not the source tree
    for path, name in (("/", "index.html"), ("/static/app.js", "app.js"), ("/static/style.css", "style.css")):
        status, text = result["pages"][path]
        assert status == 200 and text == (REPO / "mnist_dnn" / "serve" / "web" / name).read_text()


@pytest.mark.slow
def test_the_model_menu_shows_each_runs_kind_and_defaults_to_the_best_reader_of_the_kept_digits(tmp_path):
    from mnist_dnn.training.evaluate import digit_probabilities

    root = tmp_path / "runs"
    make_run(root, "20260101T000000Z-dense", seed=1)
    make_run(root, "20260102T000000Z-bn", seed=2, **{"model.batch_norm": True, "model.hidden_units": [32]})
    conv = {"model.conv_filters": [4], "model.hidden_units": [16], "model.dropout": 0.0}
    make_run(root, "20260103T000000Z-conv", seed=3, **conv)
    with _client(root, tmp_path / "digits") as test_client:
        listing = test_client.get("/api/runs").json()
        kinds = {run["name"]: run["kind"] for run in listing["runs"]}
        assert kinds == {
            "20260101T000000Z-dense": "dense",
            "20260102T000000Z-bn": "dense + batch norm",
            "20260103T000000Z-conv": "convolutional",
        }
        assert listing["default"] == "20260103T000000Z-conv"  # no kept digits: the latest complete run
        assert listing["kept_digits"] == 0 and all(run["kept_accuracy"] is None for run in listing["runs"])
        for label, points in (("7", SEVEN), ("1", ONE), ("7", SEVEN), ("1", ONE), ("4", ONE)):
            test_client.post("/api/digits", params={"label": label}, content=drawing(points), headers=PNG)
        listing = test_client.get("/api/runs").json()
    kept = load_digits([tmp_path / "digits"])
    accuracy = {
        run["name"]: float(
            np.mean(digit_probabilities(load_trained(root / run["name"]), kept.images).argmax(1) == kept.labels)
        )
        for run in listing["runs"]
    }
    assert {run["name"]: run["kept_accuracy"] for run in listing["runs"]} == pytest.approx(accuracy)
    assert listing["kept_digits"] == 5
    assert listing["default"] == max(accuracy, key=lambda name: (accuracy[name], name))  # ties: the latest
