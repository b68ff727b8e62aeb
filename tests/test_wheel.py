"""The wheel as a user meets it: built, installed into a fresh virtual environment, run from an empty directory.

No clone is in reach of the installed command: the worked configs and the paper's digits must come
from the package, and every command a first session uses must work.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest

from mnist_dnn.core.version import __version__
from mnist_dnn.data.mnist import default_cache_dir

from .conftest import REPO
from .postgres import process_alive

pytestmark = [pytest.mark.slow, pytest.mark.mnist]

DEADLINE_S = 600  # a hung command fails the test instead of holding it forever (not a timing assertion)
# What a clone holds beside the sources, left out of the copy the wheel is built from (at the top only:
# mnist_dnn/runs is a package); __pycache__ and egg-info anywhere.
NOT_SOURCES = {".git", ".venv", "runs", "build", ".pytest_cache", ".ruff_cache", "docs"}


def _not_sources(directory: str, names: list[str]) -> set[str]:
    at_top = NOT_SOURCES if Path(directory) == REPO else set()
    return {name for name in names if name in at_top or name == "__pycache__" or name.endswith(".egg-info")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel . --no-deps`, from a copy of the clone (the build's own build/ and egg-info stay out of it).

    --no-build-isolation: the build uses this environment's setuptools instead of downloading one,
    so the test needs no network.
    """
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=_not_sources)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*command, "-w", str(root / "dist")], check=True, timeout=DEADLINE_S, capture_output=True)
    (built,) = (root / "dist").glob("mnist_dnn-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel (pip install --no-deps -c constraints.txt); -> its bin directory.

    Its dependencies (TensorFlow, JAX, ... about 2 GB) are not downloaded again: a .pth file puts this
    environment's site-packages after the venv's own, so they are the very versions constraints.txt pins,
    installed by `make install`, while mnist_dnn itself can only come from the wheel (a .pth line adds a
    directory but runs none of the .pth files in it, such as the editable install's finder).
    """
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=DEADLINE_S)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
    subprocess.run([*install, "-c", str(REPO / "constraints.txt"), str(wheel)], check=True, timeout=DEADLINE_S)
    # Only now: pip would otherwise see this environment's (editable) mnist-dnn and try to replace it.
    ours = [path for path in sys.path if path.endswith("site-packages")] or [sysconfig.get_paths()["purelib"]]
    (purelib / "test_environment.pth").write_text("".join(f"{path}\n" for path in ours))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where = subprocess.run(  # from the venv's directory: `python -c` puts the working directory first on sys.path
        [python, "-c", "import mnist_dnn; print(mnist_dnn.__file__)"], cwd=venv, env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the wheel's copy, not the clone's
    return venv / "bin"


@pytest.fixture
def user(installed, tmp_path):
    """Runs `mnist-dnn ARGS` as a user would: an empty directory, a fresh HOME, MNIST from the real cache."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "KERAS_BACKEND")}
    env.update(HOME=str(home), PATH=f"{installed}{os.pathsep}{env.get('PATH', '')}")
    env["MNIST_DNN_DATA"] = str(default_cache_dir())

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(installed / "mnist-dnn"), *args], cwd=work, env=env, capture_output=True, text=True,
            timeout=DEADLINE_S,
        )  # fmt: skip
        assert done.returncode == 0, f"mnist-dnn {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    run.work, run.env, run.bin = work, env, installed
    return run


def test_the_wheel_holds_the_clone_s_configs_and_digits_byte_for_byte(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for source in sorted((REPO / "configs").glob("*.toml")):
            assert archive.read(f"mnist_dnn/builtin/configs/{source.name}") == source.read_bytes(), source.name
        digits = [*(REPO / "custom_digits").glob("*.csv"), *(REPO / "custom_digits").glob("*.preview.png")]
        digits += sorted((REPO / "custom_digits" / "source").glob("*.png"))  # eval --compare-methods reads them
        assert len(digits) == 16  # five CSVs, five previews, labels.csv, five page images
        for source in digits:
            inside = source.relative_to(REPO / "custom_digits").as_posix()
            assert archive.read(f"mnist_dnn/builtin/digits/{inside}") == source.read_bytes(), inside
        assert {"mnist_dnn/serve/web/index.html"} <= names
        metadata = archive.read(next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(name for name in names if name.endswith(".dist-info/entry_points.txt")))
    assert b"mnist-dnn = mnist_dnn.cli.launch:main" in entry_points
    for field in ("Summary", "License", "Author", "Requires-Python", "Description-Content-Type"):
        assert re.search(rf"^{field}: \S", metadata, re.M), field
    assert "Classifier: License :: OSI Approved :: MIT License" in metadata
    assert 'Requires-Dist: mnist-dnn[export,ray,serve,tune]; extra == "all"' in metadata
    assert 'Requires-Dist: psycopg[binary]>=3.2; extra == "tune"' in metadata


def test_every_dependency_of_the_all_extra_is_pinned_in_constraints_within_its_range(wheel):
    """`pip install -c constraints.txt 'mnist-dnn[all]'` can resolve: each requirement's pin satisfies it."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    wanted = {"serve", "ray", "tune", "export"}
    for line in re.findall(r"^Requires-Dist: (.+)$", metadata, re.M):
        requirement = Requirement(line)
        if requirement.name == "mnist-dnn":
            continue
        extra = re.search(r'extra == "(\w+)"', line)
        if extra is None or extra[1] in wanted:
            pin = pins.get(requirement.name.lower())
            assert pin is not None and requirement.specifier.contains(pin), (line, pin)


def test_a_user_s_first_session_from_the_installed_wheel(user):
    assert user("--version").strip() == f"mnist-dnn, version {__version__}"
    assert "handwriting             5.2.2, 6" in user("config", "list")

    trained = user("train", "--config", "handwriting", "--epochs", "1", "--set", "data.train_limit=2000", "-q")
    run_dir = Path(re.search(r"^Saved: (.+)$", trained, re.M)[1])
    assert run_dir.name.endswith("-handwriting") and (user.work / run_dir / "model.keras").exists()
    assert "augment_shift = 2" in (user.work / run_dir / "config.toml").read_text()

    scored = user("eval", "--model", str(run_dir), "--custom-csv", "paper")
    assert all(f"{digit}.csv" in scored for digit in (3, 8, 9, 5, 4)), scored

    user("digits", "copy", "paper", "mine")
    predicted = user("predict", "mine/3.csv", "--model", str(run_dir))
    assert "3.csv" in predicted, predicted

    exported = user("export", str(run_dir), "--format", "onnx")
    assert exported.startswith(f"Exported: {run_dir / 'model.onnx'}") and (user.work / run_dir / "model.onnx").exists()

    server = subprocess.Popen(
        [str(user.bin / "mnist-dnn"), "serve", "--runs-dir", "runs", "--port", "0"],
        cwd=user.work, env=user.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        opened = server.stdout.readline()  # "Open http://127.0.0.1:PORT/ in a browser ..." once it listens
        url = re.search(r"Open (http://127\.0\.0\.1:\d+/) ", opened)
        assert url, opened + server.stderr.read()
        with urllib.request.urlopen(url[1], timeout=60) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            _, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    assert server.returncode == 130 and "Stopped." in err and "Traceback" not in err, err  # stopped cleanly
    assert not process_alive(server.pid)
    assert sorted(path.name for path in user.work.iterdir()) == ["mine", "runs"]  # nothing else written here
