"""`mnist-dnn serve` in a real browser: Playwright driving the system's headless Chromium.

A model trained for one epoch on real MNIST is served by the real command on a free
loopback port; the test draws with pointer moves as a person would and checks what the
page shows, what lands on disk, and that `eval --custom-csv` scores it. Skipped only when no
Chromium can be had (`make test` installs Debian's `chromium` when it is missing).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess

import numpy as np
import pytest

from mnist_dnn.handwriting.digits import LABELS_FILE, read_digit_csv
from tests.conftest import REPO, mnist_dnn_command

pytestmark = [pytest.mark.slow]


def _load_helpers():
    """docs/serve/screenshots.py is a script, not part of the package: load it by path."""
    spec = importlib.util.spec_from_file_location("serve_screenshots", REPO / "docs" / "serve" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _load_helpers()


@pytest.fixture(scope="module")
def chromium():
    path = helpers.chromium_path()
    if path is None:
        pytest.skip("no Chromium here: apt-get install chromium (as `make test` does) or set MNIST_DNN_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """One epoch of the paper's network on real MNIST: enough to read a clear 7 and 1."""
    runs_dir = tmp_path_factory.mktemp("runs")
    helpers.train(runs_dir, "20260101T000000Z-paper", 1)
    return runs_dir


@pytest.fixture
def server(trained_runs, tmp_path):
    digits_dir = tmp_path / "my_digits"
    process, url = helpers.start_server(trained_runs, digits_dir)
    try:
        yield url, digits_dir
    finally:
        status, err = helpers.stop_server(process) if process.poll() is None else (process.returncode, "")
    assert status == 130 and "Stopped." in err and "Traceback" not in err, err  # Ctrl-C stops it cleanly


@pytest.fixture
def page(chromium, server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield helpers.open_page(browser, server[0])
        finally:
            browser.close()


def _bars(page) -> dict[int, float]:
    values = page.eval_on_selector_all("#bars .bar", "bars => bars.map(b => [b.dataset.digit, b.dataset.p])")
    return {int(d): float(p) for d, p in values}


def _preview(page) -> np.ndarray:
    """The 28x28 the page shows, as ink 0-255 (the preview draws ink dark)."""
    red = page.evaluate(
        "() => Array.from(document.getElementById('preview').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data).filter((_, i) => i % 4 === 0)"
    )
    return 255 - np.array(red, dtype=np.float32).reshape(28, 28)


@pytest.mark.mnist
def test_draw_a_seven_and_a_one_see_them_read_save_them_and_eval_scores_them(page, server, trained_runs, tmp_path):
    url, digits_dir = server
    assert page.text_content("#predicted") == "–"  # an empty pad is an empty state, not an error
    assert page.text_content("#message") == ""
    previews = {}
    for digit in (7, 1):
        helpers.draw(page, digit)
        assert helpers.wait_for_reading(page) == str(digit)
        bars = _bars(page)
        assert max(bars, key=bars.get) == digit and bars[digit] > 0.5
        assert sum(bars.values()) == pytest.approx(1.0, abs=0.01)
        assert page.get_attribute("#bars .bar.top", "data-digit") == str(digit)
        previews[digit] = _preview(page)
        assert previews[digit].max() == 255  # the ink the model sees
        page.screenshot(path=tmp_path / f"draw-{digit}.png")
        helpers.save(page, digit)

    assert (digits_dir / LABELS_FILE).read_text() == "file,label\n7-001.csv,7\n1-002.csv,1\n"
    for name, digit in (("7-001.csv", 7), ("1-002.csv", 1)):
        np.testing.assert_array_equal(read_digit_csv(digits_dir / name), previews[digit])  # saved = shown

    page.goto(f"{url}#keep")
    page.wait_for_selector(".thumb")
    assert page.locator(".thumb .label").all_text_contents() == ["7", "1"]
    page.screenshot(path=tmp_path / "keep.png")
    page.goto(f"{url}#score")
    page.wait_for_selector("#score-table td.right")
    assert page.locator("#score-table td.right").all_text_contents() == ["7", "1"]
    assert page.locator("#score-table td.wrong").count() == 0
    page.screenshot(path=tmp_path / "score.png")

    run_dir = trained_runs / "20260101T000000Z-paper"
    command = [*mnist_dnn_command(), "eval", "--model", str(run_dir), "--custom-csv", str(digits_dir), "--json"]
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    assert result["accuracy"] == 1.0
    assert [row["predicted"] for row in result["images"]] == [7, 1]


@pytest.mark.mnist
def test_runs_page_shows_each_runs_figure_6(page, server):
    page.goto(f"{server[0]}#runs")
    page.wait_for_selector("#runs-table tr.clickable")
    row = page.locator("#runs-table tr.clickable")
    assert "complete" in row.text_content() and "train.epochs=1" in row.text_content()
    row.click()
    page.wait_for_function("() => document.getElementById('figure-img').naturalWidth > 0")
    assert page.locator("#figure-img").evaluate("img => img.naturalWidth") >= 600  # figure 6: two panels
