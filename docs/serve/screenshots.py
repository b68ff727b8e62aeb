"""The pictures of `mnist-dnn serve` in docs/commands/serve.md: a short real training run, the page driven in Chromium.

    python docs/serve/screenshots.py --out docs/serve       # what `make screenshots` runs (a few minutes)

Trains two short runs on MNIST (the paper's settings for 2 epochs, and the same with a
learning rate of 0.01) into a temporary runs directory, starts `mnist-dnn serve` on a free
loopback port, draws a 7, a 1 and a 2 with pointer moves, saves them, and screenshots the
Draw, Keep, Score and Runs pages. The browser tests (tests/test_serve_browser.py) drive the
page with the same helpers. Playwright uses the system's Chromium (Debian's `chromium`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

PAD_SIDE = 280  # the canvas of the Draw page, in CSS pixels
# Strokes as fractions of the pad, one list of points per pen-down: how a person draws these digits.
STROKES = {
    7: [[(0.24, 0.22), (0.74, 0.22), (0.62, 0.45), (0.46, 0.82)]],
    1: [[(0.47, 0.17), (0.53, 0.17), (0.51, 0.5), (0.5, 0.84)]],
    2: [[(0.3, 0.32), (0.42, 0.18), (0.62, 0.19), (0.68, 0.34), (0.56, 0.52), (0.3, 0.8), (0.74, 0.8)]],
}
MNIST_DNN = [sys.executable, "-m", "mnist_dnn"]
_URL = re.compile(r"(http://\S+/)")


def chromium_path() -> str | None:
    """The system Chromium: $MNIST_DNN_CHROMIUM, else `chromium` (Debian) or `chromium-browser` on PATH."""
    return os.environ.get("MNIST_DNN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def train(runs_dir: Path, name: str, epochs: int, *extra: str) -> Path:
    """One real `mnist-dnn train` run into runs_dir/name."""
    out = runs_dir / name
    subprocess.run([*MNIST_DNN, "train", "--epochs", str(epochs), "--out", str(out), "-q", *extra], check=True)
    return out


def start_server(
    runs_dir: Path, digits_dir: Path, *extra: str, cwd: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """`mnist-dnn serve` on a free loopback port; returns the process and the URL it printed."""
    process = subprocess.Popen(
        [*MNIST_DNN, "serve", "--runs-dir", str(runs_dir), "--digits", str(digits_dir), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    line = process.stdout.readline()
    match = _URL.search(line)
    if not match:
        process.kill()
        raise RuntimeError(f"mnist-dnn serve did not print its URL: {line!r} {process.stderr.read()}")
    return process, match.group(1)


def stop_server(process: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    """Ctrl-C, as a person would; returns the exit status and what it wrote to stderr."""
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def draw(page, digit: int) -> None:
    """Draw `digit` on the pad with the mouse: pointer down, moves in small steps, pointer up."""
    box = page.locator("#pad").bounding_box()
    for stroke in STROKES[digit]:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=10)
        page.mouse.up()


def wait_for_reading(page) -> str:
    """Wait until the page shows the reading of the drawing as it is now; return the digit it shows."""
    page.wait_for_function(
        "() => { const pad = document.getElementById('pad');"
        " return pad.dataset.shown === pad.dataset.version"
        " && /^[0-9]$/.test(document.getElementById('predicted').textContent); }"
    )
    return page.text_content("#predicted")


def save(page, digit: int) -> None:
    page.click(f"#save-buttons button[data-label='{digit}']")
    page.wait_for_function("() => document.getElementById('latency').textContent.startsWith('Saved')")


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1060, "height": 620})
    page.goto(url)
    page.wait_for_selector("#model option", state="attached")
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/serve"))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no chromium found: apt-get install chromium (make test does), or set MNIST_DNN_CHROMIUM")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mnist-dnn-screenshots-") as scratch:
        runs_dir = Path(scratch) / "runs"
        train(runs_dir, "20260101T000000Z-paper", args.epochs)
        train(runs_dir, "20260101T000100Z-lr0.01", args.epochs, "--learning-rate", "0.01")
        process, url = start_server(Path("runs"), Path("my_digits"), cwd=Path(scratch))  # paths as a user types them
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable, headless=True)
                page = open_page(browser, url)
                for digit in (7, 1, 2):
                    draw(page, digit)
                    wait_for_reading(page)
                    if digit == 2:
                        page.screenshot(path=args.out / "draw.png")
                    save(page, digit)
                for name, shown in (("keep", ".thumb"), ("score", "#most-missed li")):
                    page.goto(f"{url}#{name}")
                    page.wait_for_selector(shown)
                    page.screenshot(path=args.out / f"{name}.png", full_page=True)
                page.goto(f"{url}#runs")
                page.wait_for_selector("#runs-table input")
                for box in page.locator("#runs-table input").all():
                    box.check()
                page.click("#overlay")
                page.wait_for_function("() => document.getElementById('figure-img').naturalWidth > 0")
                page.screenshot(path=args.out / "runs.png", full_page=True)
                browser.close()
        finally:
            stop_server(process)
    for name in ("draw", "keep", "score", "runs"):
        print(args.out / f"{name}.png")


if __name__ == "__main__":
    main()
