"""Output paths: what a command may write is checked before it works, and never clobbers what it must not."""

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_dnn.core.errors import UserInputError
from mnist_dnn.runs.outputs import RUN_FILES, check_output_dir, check_output_file
from tests.test_reliability import FUZZ, _either_valid_or_user_error


def test_a_new_name_or_an_existing_regular_file_of_the_right_kind_is_accepted(tmp_path):
    assert check_output_file(tmp_path / "new" / "deeper" / "m.csv", (".csv",)) == tmp_path / "new" / "deeper" / "m.csv"
    (tmp_path / "old.CSV").write_text("x")
    check_output_file(tmp_path / "old.CSV", (".csv",), overwrite=True)  # not ours: replaced only when asked
    check_output_file(tmp_path / "confusion_matrix.csv", (".csv",))  # a table commands add to a run: rewritable
    check_output_dir(tmp_path / "a" / "b")
    check_output_dir(tmp_path)


def test_an_output_of_the_wrong_kind_is_refused(tmp_path):
    with pytest.raises(UserInputError, match=r"^--out .*m\.txt: expected a \.png, \.svg or \.pdf file name$"):
        check_output_file(tmp_path / "m.txt", (".png", ".svg", ".pdf"))
    with pytest.raises(UserInputError, match=r"dir\.csv: is a directory \(expected a \.csv file name\)$"):
        (tmp_path / "dir.csv").mkdir()
        check_output_file(tmp_path / "dir.csv", (".csv",))


@pytest.mark.parametrize("kind", ["fifo", "device", "socket"])
def test_an_output_is_never_a_special_file(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "pipe.csv"
        os.mkfifo(path)
        expected = "a FIFO"
    elif kind == "device":
        path = tmp_path / "null.csv"
        path.symlink_to("/dev/null")  # a link to a device is followed: the device is what would be written
        expected = "a character device"
    else:
        import socket

        path = tmp_path / "s.csv"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
        expected = "a socket"
    with pytest.raises(UserInputError, match=f"is {expected}, not a regular file; choose a file name$"):
        check_output_file(path, (".csv",))
    with pytest.raises(UserInputError, match=f"is {expected}, not a directory$"):
        check_output_dir(path)
    assert not stat.S_ISREG(os.stat(path).st_mode)


def test_an_output_is_never_a_file_the_same_command_reads(tmp_path):
    model = tmp_path / "run" / "weights.csv"
    model.parent.mkdir()
    model.write_text("x")
    (tmp_path / "hard.csv").hardlink_to(model)
    (tmp_path / "soft.csv").symlink_to(model)
    for alias in (model, tmp_path / "run" / ".." / "run" / "weights.csv", tmp_path / "hard.csv", tmp_path / "soft.csv"):
        with pytest.raises(UserInputError, match=f"is {model}, which this command reads; choose another file$"):
            check_output_file(alias, (".csv",), reads=[model])
    assert model.read_text() == "x"


@pytest.mark.parametrize("name", RUN_FILES)
def test_an_output_is_never_one_of_a_runs_own_files(tmp_path, name):
    with pytest.raises(UserInputError, match=f"{name} is one of a run directory's own files; choose another name"):
        check_output_file(tmp_path / "run" / name, (Path(name).suffix,))


def test_an_output_below_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    for target in (tmp_path / "file" / "m.csv", tmp_path / "file" / "sub" / "m.csv"):
        with pytest.raises(UserInputError, match=rf"^--out {target}: {tmp_path / 'file'} is a regular file, not a dir"):
            check_output_file(target, (".csv",))
        with pytest.raises(UserInputError, match="is a regular file, not a directory$"):
            check_output_dir(target)
    with pytest.raises(UserInputError, match="is a regular file, not a directory$"):
        check_output_dir(tmp_path / "file")


# --- fuzz: any tree of files, directories, links and FIFOs; any name -----------------------------------------------

_KINDS = st.sampled_from(["missing", "dir", "file", "fifo", "link-to-file", "link-to-dir", "dangling", "devnull"])
_NAMES = st.one_of(
    st.sampled_from([*RUN_FILES, "m.csv", "m.png", "x.PNG", "a", ".csv", "read.csv", "é 😀.svg"]),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\x00"), min_size=1, max_size=8),
)


def _make(path: Path, kind: str, root: Path) -> None:
    if kind == "dir":
        path.mkdir()
    elif kind == "file":
        path.write_text("old")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-to-file":
        path.symlink_to(root / "read.csv")
    elif kind == "link-to-dir":
        path.symlink_to(root)
    elif kind == "dangling":
        path.symlink_to(root / "nowhere")
    elif kind == "devnull":
        path.symlink_to("/dev/null")


@FUZZ
@given(parts=st.lists(st.tuples(_NAMES, _KINDS), min_size=1, max_size=3), as_dir=st.booleans())
def test_fuzz_output_paths(tmp_path_factory, parts, as_dir):
    """Whatever is on the way, the checker answers one line or a path a write can replace safely."""
    root = tmp_path_factory.mktemp("tree")
    (root / "read.csv").write_text("input")
    path = root
    for name, kind in parts:
        if name in (".", ".."):
            name = f"{name}x"
        path = path / name
        if path.parent.is_dir() and not os.path.lexists(path):
            try:
                _make(path, kind, root)
            except OSError:  # a name too long or invalid for this file system
                return
    if as_dir:
        if _either_valid_or_user_error(check_output_dir, path) is None:
            return
        assert not os.path.exists(path) or path.is_dir()
    else:
        suffixes = (".csv", ".png", ".svg")
        if _either_valid_or_user_error(check_output_file, path, suffixes, [root / "read.csv"]) is None:
            return
        assert path.suffix.lower() in suffixes and path.name not in RUN_FILES
        assert not os.path.exists(path) or stat.S_ISREG(os.stat(path).st_mode)
        assert not os.path.exists(path) or not os.path.samefile(path, root / "read.csv")
    ancestor = next(p for p in path.absolute().parents if os.path.exists(p))
    assert ancestor.is_dir()
    assert (root / "read.csv").read_text() == "input"


# --- every command with --out checks it before any work --------------------------------------------------------------

_CSV = "\n".join(",".join("255" if c == 14 and 4 <= r < 24 else "0" for c in range(28)) for r in range(28)) + "\n"

OUT_CASES = {  # name -> (arguments, message on stderr)
    "eval: the model itself": (["eval", "--model", "RUN", "--out", "RUN/model.keras"], "expected a .csv file name"),
    "eval: a run's own file": (["eval", "--model", "RUN", "--out", "RUN/history.csv"], "one of a run directory's own"),
    "eval: a FIFO": (["eval", "--model", "RUN", "--out", "fifo.csv"], "fifo.csv: is a FIFO, not a regular file"),
    "eval: below a file": (["eval", "--model", "RUN", "--out", "file/m.csv"], "file is a regular file, not a dir"),
    "show: a FIFO": (["show", "--custom-csv", "d", "--out", "fifo.png"], "fifo.png: is a FIFO, not a regular file"),
    "show: a device": (["show", "--custom-csv", "d", "--out", "null.png"], "is a character device, not a regular"),
    "show: below a file": (["show", "--custom-csv", "d", "--out", "file/x.png"], "file is a regular file, not a dir"),
    "show: its own input": (["show", "--custom-csv", "d/7.png", "--out", "d/7.png"], "which this command reads"),
    "plot: a file": (["plot", "RUN", "--out", "file"], "'--out': Directory 'file' is a file"),  # click's own
    "plot: below a file": (["plot", "RUN", "--out", "file/figs"], "file is a regular file, not a directory"),
    "train: below a file": (["train", "--out", "file/run"], "file is a regular file, not a directory"),
    "sweep: below a file": (["sweep", "--out", "file/s"], "file is a regular file, not a directory"),
    "eval custom: below a file": (["eval", "--custom-csv", "d", "--out", "file/run"], "file is a regular file, not a"),
    "digitize: below a file": (["digitize", "d/7.png", "--out", "file/o"], "file is a regular file, not a directory"),
}


@pytest.mark.parametrize("case", OUT_CASES)
def test_every_out_is_checked_before_any_work_and_clobbers_nothing(cli_env, case):
    from click.testing import CliRunner
    from PIL import Image

    from mnist_dnn.cli.app import main

    (cli_env / "RUN").mkdir()
    (cli_env / "RUN" / "model.keras").write_bytes(b"the trained model")
    (cli_env / "RUN" / "history.csv").write_text("epoch,loss,accuracy\n1,0.5,0.9\n")
    (cli_env / "d").mkdir()
    (cli_env / "d" / "3.csv").write_text(_CSV)
    Image.new("L", (40, 60), 255).save(cli_env / "d" / "7.png")
    (cli_env / "file").write_text("a file")
    os.mkfifo(cli_env / "fifo.csv")
    os.mkfifo(cli_env / "fifo.png")
    (cli_env / "null.png").symlink_to("/dev/null")
    before = {p: (p.lstat().st_mode, p.read_bytes() if p.is_file() else None) for p in cli_env.rglob("*")}
    args, message = OUT_CASES[case]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    after = {p: (p.lstat().st_mode, p.read_bytes() if p.is_file() else None) for p in cli_env.rglob("*")}
    assert after == before  # nothing made, nothing replaced: the FIFOs are FIFOs, the model is the model


@settings(FUZZ, max_examples=40)
@given(parts=st.lists(st.tuples(_NAMES, _KINDS), min_size=1, max_size=3))
def test_fuzz_show_out_paths(tmp_path_factory, parts):
    """`show --out` with any path: a figure in a regular file of its kind, or one line and nothing touched."""
    from click.testing import CliRunner

    from mnist_dnn.cli.app import main

    root = tmp_path_factory.mktemp("show")
    (root / "read.csv").write_text(_CSV)
    path = root
    for name, kind in parts:
        path = path / (f"{name}x" if name in (".", "..") else name)
        if path.parent.is_dir() and not os.path.lexists(path):
            try:
                _make(path, kind, root)
            except OSError:
                return
    before = {p: p.lstat().st_mode for p in root.rglob("*")}
    result = CliRunner().invoke(main, ["show", "--custom-csv", str(root / "read.csv"), "--out", str(path)])
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert {p: p.lstat().st_mode for p in root.rglob("*")} == before
    else:
        assert stat.S_ISREG(os.stat(path).st_mode) and path.suffix.lower() in (".png", ".svg", ".pdf")
    assert (root / "read.csv").read_text() == _CSV


def test_a_user_error_is_one_line_whatever_the_names_it_quotes(tmp_path):
    name = "two\nlines\x85and\u2028more.txt"
    with pytest.raises(UserInputError) as caught:
        check_output_file(tmp_path / name, (".csv",))
    assert len(str(caught.value).splitlines()) == 1 and "two\\nlines\\x85and\\u2028more.txt" in str(caught.value)
