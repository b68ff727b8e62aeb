"""The worked configs and the paper's digits inside the package: by name, listed, copied out, and the clone's files."""

import json

import click
import pytest
from click.testing import CliRunner

from mnist_dnn.cli.app import main
from mnist_dnn.cli.options import ConfigArgument, DigitsArgument
from mnist_dnn.core import packaged
from mnist_dnn.core.backend import machine
from mnist_dnn.runs import directory as runs
from mnist_dnn.runs import records

from .conftest import REPO


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_the_packaged_configs_and_digits_are_the_clones_files_byte_for_byte():
    sources = sorted((REPO / "configs").glob("*.toml"))
    assert packaged.config_names() == [path.stem for path in sources]
    for source in sources:
        assert (packaged.configs_dir() / source.name).read_bytes() == source.read_bytes(), source.name
    digits = REPO / "custom_digits"
    expected = sorted({p.name for pattern in packaged.DIGIT_PATTERNS for p in digits.glob(pattern)})
    assert [path.name for path in packaged.digit_files()] == expected
    assert "labels.csv" in expected and len([name for name in expected if name.endswith(".preview.png")]) == 5
    for path in packaged.digit_files():
        assert path.read_bytes() == (digits / path.name).read_bytes(), path.name
    pages = sorted((digits / "source").glob("*.png"))
    assert [page.name for page in pages] == ["3.png", "4.png", "5.png", "8.png", "9.png"]
    for page in pages:  # eval --custom-csv paper --compare-methods digitizes them
        assert (packaged.digits_dir() / "source" / page.name).read_bytes() == page.read_bytes()


def test_config_list_prints_each_builtin_config_with_its_section_and_what_it_shows():
    result = _run("config", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "section", "shows"]
    assert [line.split()[0] for line in lines[1:]] == packaged.config_names()
    for name, section, shows in packaged.config_list():  # each from the file's own first line
        first = (REPO / "configs" / f"{name}.toml").read_text().splitlines()[0]
        assert first == f"# section {section} | {shows}"
        assert any(line.startswith(name + " ") and line.endswith(f"  {shows}") for line in lines)


def test_configs_readme_shows_config_list_exactly_as_it_prints():
    readme = (REPO / "configs" / "README.md").read_text()
    assert f"```\n$ mnist-dnn config list\n{_run('config', 'list').output}```" in readme


def test_every_option_that_takes_a_config_takes_a_builtin_name_and_every_digit_input_paper():
    configs, digits = [], []

    def walk(command, path):
        for sub in getattr(command, "commands", {}).values():
            walk(sub, [*path, sub.name])
        for param in command.params:
            if "--config" in getattr(param, "opts", ()):
                configs.append((" ".join(path), isinstance(param.type, ConfigArgument)))
            if param.name in ("custom_paths", "files"):
                digits.append((" ".join(path), isinstance(param.type, DigitsArgument)))

    walk(main, [])
    assert sorted(configs) == [(name, True) for name in ("config show", "eval", "sweep", "train", "tune")]
    assert sorted(digits) == [(name, True) for name in ("eval", "predict", "show")]


def test_config_show_takes_a_builtin_name(cli_env):
    result = _run("config", "show", "--config", "handwriting")
    assert result.exit_code == 0, result.output
    assert "augment_shift = 2" in result.output and "augment_blur = 1.0" in result.output


def test_an_existing_path_wins_over_a_builtin_config_name(cli_env):
    (cli_env / "sgd").write_text("[train]\nepochs = 7\n")
    result = _run("config", "show", "--config", "sgd")
    assert result.exit_code == 0, result.output
    assert "epochs = 7" in result.output and 'name = "adam"' in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["train"],
        ["sweep"],
        ["tune", "--space", "model.dropout=float:0..0.5", "--trials", "1"],
        ["eval", "--custom-csv", "paper"],
        ["config", "show"],
    ],
)
def test_an_unknown_config_name_lists_the_builtin_ones_in_one_line_exit_2(cli_env, args):
    result = _run(*args, "--config", "handwritng")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "Error: handwritng: no such config file, and no built-in config of that name "
        f"(built-in: {', '.join(packaged.config_names())}; see 'mnist-dnn config list')\n"
    )
    assert list(cli_env.iterdir()) == []


def test_custom_csv_paper_names_the_packaged_digits_unless_a_path_paper_exists(cli_env):
    from mnist_dnn.handwriting.digits import load_digits

    digits_type = DigitsArgument(exists=True)
    found = load_digits([digits_type.convert("paper", None, None)])
    assert found.labels.tolist() == [3, 8, 9, 5, 4]  # section 5.2.2's order
    (cli_env / "paper").mkdir()
    assert digits_type.convert("paper", None, None) == cli_env.joinpath("paper").relative_to(cli_env)
    with pytest.raises(click.BadParameter):
        digits_type.convert("papers", None, None)


def test_digits_copy_writes_the_paper_s_digits_as_the_clone_has_them(cli_env):
    result = _run("digits", "copy", "paper", "mine")
    assert result.exit_code == 0, result.output
    written = sorted(path.name for path in (cli_env / "mine").iterdir())
    assert written == [path.name for path in packaged.digit_files()]
    for name in written:
        assert (cli_env / "mine" / name).read_bytes() == (REPO / "custom_digits" / name).read_bytes()
    assert sorted(path.name for path in cli_env.iterdir()) == ["mine"]  # no staging directory left behind


def test_digits_copy_refuses_a_non_empty_directory_unless_overwrite(cli_env):
    (cli_env / "mine").mkdir()
    (cli_env / "mine" / "3.csv").write_text("mine\n")
    (cli_env / "mine" / "notes.txt").write_text("keep\n")
    result = _run("digits", "copy", "paper", "mine")
    assert result.exit_code == 2
    assert result.stderr == "Error: mine: exists and is not empty (--overwrite replaces files of the same names)\n"
    assert (cli_env / "mine" / "3.csv").read_text() == "mine\n" and len(list((cli_env / "mine").iterdir())) == 2
    result = _run("digits", "copy", "paper", "mine", "--overwrite")
    assert result.exit_code == 0, result.output
    assert (cli_env / "mine" / "3.csv").read_bytes() == (REPO / "custom_digits" / "3.csv").read_bytes()
    assert (cli_env / "mine" / "notes.txt").read_text() == "keep\n"  # only files of the same names replaced


def test_digits_copy_of_an_unknown_set_or_onto_a_file_is_one_line_exit_2(cli_env):
    (cli_env / "taken").write_text("x")
    for args, message in (
        (["nosuch", "out"], "Error: Invalid value for 'NAME': 'nosuch' is not 'paper'."),
        (["paper", "taken"], "Error: taken: is a regular file, not a directory"),
    ):
        result = _run("digits", "copy", *args)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert sorted(path.name for path in cli_env.iterdir()) == ["taken"]


def test_machine_names_the_cpu_and_the_widest_instruction_set_xla_may_use():
    cpuinfo = "processor : 0\nmodel name : AMD EPYC\nflags : sse4_2 avx avx2 fma avx512f avx512cd avx512bw avx512dq "
    assert machine(cpuinfo + "avx512vl avx512_vnni\n", "") == {"cpu": "AMD EPYC", "xla_cpu_isa": "AVX512_VNNI"}
    assert machine(cpuinfo + "\n", "") == {"cpu": "AMD EPYC", "xla_cpu_isa": "AVX2"}  # AVX-512 lacks avx512vl
    capped = machine(cpuinfo + "avx512vl\n", "--xla_force_host_platform_device_count=2 --xla_cpu_max_isa=avx")
    assert capped["xla_cpu_isa"] == "AVX"


@pytest.mark.slow
@pytest.mark.mnist
def test_a_builtin_config_and_the_same_file_from_the_clone_give_byte_identical_runs(cli_env):
    common = ["--epochs", "1", "--set", "data.train_limit=500", "-q", "--no-plots", "--no-tensorboard"]
    for out, config in (("named", "handwriting"), ("file", str(REPO / "configs" / "handwriting.toml"))):
        result = CliRunner().invoke(main, ["train", "--config", config, "--out", out, *common])
        assert result.exit_code == 0, result.output
    named, file = cli_env / "named", cli_env / "file"
    assert (named / "config.toml").read_bytes() == (file / "config.toml").read_bytes()

    def without_timings(run_dir):
        history = records.read_history(run_dir / runs.HISTORY_FILE)
        history = {name: column for name, column in history.items() if name not in records.TIMING_COLUMNS}
        metrics = json.loads((run_dir / runs.METRICS_FILE).read_text())
        metrics.pop("timings")
        return history, metrics

    assert without_timings(named) == without_timings(file)
    metrics = json.loads((named / runs.METRICS_FILE).read_text())
    assert metrics["machine"] == machine() and metrics["machine"]["cpu"]  # where these digits came from


def test_digits_copy_into_a_directory_that_appears_meanwhile_is_one_line_and_leaves_no_staging(cli_env, monkeypatch):
    """Two copies to one new DIR at once: the second finds the first's files there when it renames its own."""
    real = packaged.atomic_write_bytes
    rival = cli_env / "mine"

    def write_then_rival_copies(path, data):
        real(path, data)
        if not rival.exists():
            rival.mkdir()
            (rival / "3.csv").write_text("the other copy's\n")

    monkeypatch.setattr(packaged, "atomic_write_bytes", write_then_rival_copies)
    result = _run("digits", "copy", "paper", "mine")
    assert result.exit_code == 2, result.output
    assert result.stderr == "Error: mine: appeared while the digits were copied; nothing was written\n"
    assert sorted(path.name for path in cli_env.iterdir()) == ["mine"]  # no .mine.*.partial left behind
    assert [path.name for path in rival.iterdir()] == ["3.csv"]
