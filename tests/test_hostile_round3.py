"""Hostile-input round three (issue 24): the web app, the run folder's files and outputs.

Each test is named after the promise it keeps; docs/reliability-round3.md lists them with
the line a user sees. The fuzz tests run a fixed number of derandomized examples.
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import struct
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_dnn import runs
from mnist_dnn.cli import main
from mnist_dnn.digits import read_photo, read_photo_bytes
from mnist_dnn.errors import UserInputError
from mnist_dnn.png_header import png_size

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

    from mnist_dnn import serve

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
