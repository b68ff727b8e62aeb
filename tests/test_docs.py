"""The manual stays true: every `mnist-dnn ...` line in README.md and docs/ parses against the real CLI,
and every page of docs/ is in the site's nav.

How a command line is found and read (write the docs to these rules):

- Where: fenced code blocks (any language but python/toml/json/yaml/csv) and inline code spans, in
  README.md, docs/**/*.md and the files those pages include (`--8<-- "configs/README.md"`).
- In a block that has `$ ` prompts, only the prompted lines are commands; the rest is output. A line
  ending in `\\` continues on the next one.
- A command is a piece of a shell line between `|`, `||`, `&&`, `;` whose first word, after
  `VAR=value` prefixes, is `mnist-dnn` (or a path ending in `/mnist-dnn`). `# comments` and
  redirections (`> file`, `2>&1`) are dropped; `{a,b}` brace groups are expanded.
- Placeholders are ordinary words: `runs/<run>`, `RUN`, `photo.jpg`, `HEAD_IP:6379` parse as the
  paths and texts they stand for. A path the CLI requires to exist (`click.Path(exists=True)`, and
  `--config`) must exist only when it names a file of this repository (`configs/...`,
  `custom_digits/...`); runs and photos are the reader's own.
- `...` stands for options shown elsewhere: such a line, and every inline span, may leave out
  required options and arguments. Everything it does give is checked.

Checked with Click's own parser (`make_context`, group by group) on copies of the commands whose
parameters have no callbacks, so nothing runs: commands and subcommands exist, every option exists,
values convert to their types and choices, and the number of arguments is right.
"""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

from mnist_dnn.cli.app import main as cli
from mnist_dnn.cli.options import ConfigArgument, DigitsArgument
from mnist_dnn.core.packaged import config_names

REPO = Path(__file__).resolve().parent.parent
SNIPPET = re.compile(r'^--8<-- "([^"]+)"', re.M)  # a page that includes a file of the repository (configs/README.md)
DOCS = sorted((REPO / "docs").rglob("*.md"))
PAGES = [REPO / "README.md", *DOCS] + [
    REPO / name for page in DOCS for name in SNIPPET.findall(page.read_text("utf-8"))
]
NOT_SHELL = {"python", "py", "toml", "json", "yaml", "yml", "csv"}
CONTROL = {"|", "||", "&&", ";", "&"}
REDIRECTION = re.compile(r"^\d*(>>?|<|>&|&>)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
FENCE = re.compile(r"^(\s*)(```|~~~)\s*([\w+-]*)")
# Path parameters that name input the command reads, beyond those Click itself requires to exist.
READ_PARAMS = {"config_path", "config_paths", "custom_paths", "files", "run_dir"}
INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


@dataclass(frozen=True)
class CommandLine:
    where: str  # file:line
    text: str  # as written, continuations joined
    args: tuple[str, ...]  # the words after `mnist-dnn`
    lenient: bool  # may leave out required options and arguments


def _expand_braces(word: str) -> list[str]:
    """`source/{3,8}.png` -> both files, as the shell would (one group at a time)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not match:
        return [word]
    return [
        expanded
        for part in match.group(1).split(",")
        for expanded in _expand_braces(word[: match.start()] + part + word[match.end() :])
    ]


def commands_in_shell_line(line: str) -> list[list[str]]:
    """The argument lists of the `mnist-dnn` commands in one shell line (prompt already removed)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: prose, not a command
        return []
    pieces, piece = [], []
    for word in [*words, ";"]:
        if word in CONTROL:
            pieces.append(piece)
            piece = []
        else:
            piece.append(word)
    found = []
    for piece in pieces:
        kept, skip = [], False
        for word in piece:
            if skip:
                skip = False
            elif REDIRECTION.match(word):
                skip = REDIRECTION.match(word).end() == len(word)  # `> file`: the file is the next word
            else:
                kept.append(word)
        while kept and ASSIGNMENT.match(kept[0]):
            kept.pop(0)
        if kept and (kept[0] == "mnist-dnn" or kept[0].endswith("/mnist-dnn")):
            found.append([expanded for word in kept[1:] for expanded in _expand_braces(word)])
    return found


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Lines with their `\\` continuations joined, each with the number of its first line."""
    joined, start, parts = [], None, []
    for number, line in lines:
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        joined.append((start, " ".join(part.strip() for part in parts)))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(part.strip() for part in parts)))
    return joined


def commands_in_markdown(text: str, name: str) -> list[CommandLine]:
    """Every `mnist-dnn` command in a markdown text's code blocks and inline code spans."""
    found: list[CommandLine] = []
    prose: list[tuple[int, str]] = []
    block: list[tuple[int, str]] | None = None
    fence, language = "", ""
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if block is None and match:
            block, fence, language = [], match.group(2), match.group(3).lower()
        elif block is not None and line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
            if language not in NOT_SHELL:
                found.extend(_commands_in_block(block, name))
            block = None
        elif block is not None:
            block.append((number, line))
        else:
            prose.append((number, line))
    # Inline spans may wrap onto the next line: read each paragraph as one text.
    paragraph: list[tuple[int, str]] = []
    for number, line in [*prose, (0, "")]:
        if line.strip():
            paragraph.append((number, line))
            continue
        if paragraph:
            text_of = " ".join(part.strip() for _, part in paragraph)
            for span in INLINE.finditer(text_of):
                for args in commands_in_shell_line(span.group(1)):
                    if span.group(1).lstrip().startswith(("mnist-dnn", "$ mnist-dnn")):
                        found.append(CommandLine(f"{name}:{paragraph[0][0]}", span.group(1), tuple(args), True))
        paragraph = []
    return found


def _commands_in_block(block: list[tuple[int, str]], name: str) -> list[CommandLine]:
    prompted = any(line.lstrip().startswith("$ ") for _, line in block)
    found = []
    for number, line in _logical_lines(block):
        stripped = line.strip()
        if prompted:
            if not stripped.startswith("$ "):
                continue
            stripped = stripped[2:]
        for args in commands_in_shell_line(stripped):
            found.append(CommandLine(f"{name}:{number}", stripped, tuple(args), "..." in args))
    return found


def _quiet_param(param: click.Parameter, lenient: bool) -> click.Parameter:
    """A copy that converts and checks like the original but runs no callback and needs no file of the reader's."""
    quiet = copy.copy(param)
    quiet.callback = None
    if isinstance(param.type, click.Path) and param.type.exists:
        quiet.type = copy.copy(param.type)
        quiet.type.exists = False
    if isinstance(param.type, (ConfigArgument, DigitsArgument)):  # a built-in name, else a path checked below
        quiet.type = click.Path(path_type=Path)
    if lenient:
        quiet.required = False
    return quiet


def _quiet_command(command: click.Command, lenient: bool) -> click.Command:
    quiet = copy.copy(command)
    quiet.params = [_quiet_param(param, lenient) for param in command.params]
    return quiet


def _repository_file_problems(command: click.Command, values: dict) -> list[str]:
    """Paths this repository ships (configs/..., custom_digits/...) that a command reads must exist."""
    tracked = {path.name for path in REPO.iterdir() if path.is_dir() and not path.name.startswith(".")}
    tracked -= {"runs", "build"}
    problems = []
    for param in command.params:
        reads = (isinstance(param.type, click.Path) and param.type.exists) or param.name in READ_PARAMS
        value = values.get(param.name)
        if not reads or value is None:
            continue
        for path in value if isinstance(value, (list, tuple)) else [value]:
            path = Path(path)
            if isinstance(param.type, ConfigArgument) and len(path.parts) == 1 and not path.suffix:
                if path.name not in config_names():
                    problems.append(f"{path}: no built-in config of that name")
                continue
            if not path.is_absolute() and path.parts and path.parts[0] in tracked and not (REPO / path).exists():
                problems.append(f"{path}: no such file in this repository")
    return problems


def check_command(args: tuple[str, ...], lenient: bool = False) -> str | None:
    """None when `mnist-dnn ARGS` parses against the real CLI, else Click's message (nothing is run)."""
    args = [arg for arg in args if arg != "..."]
    command, name, parent = cli, "mnist-dnn", None
    help_names = {*cli.context_settings.get("help_option_names", ["--help"]), "--version"}  # eager: print, exit
    try:
        while True:
            if isinstance(command, click.Group):
                own = args[: next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))]
                if help_names & set(own):
                    return None
                if not args:  # the command's name alone, as prose names it
                    return None if lenient else "Missing command."
                ctx = _quiet_command(command, lenient).make_context(name, list(args), parent=parent)
                rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
                if not rest:
                    return None if lenient else "Missing command."
                name, command, args = command.resolve_command(ctx, rest)
                parent = ctx
                continue
            if help_names & set(args):
                return None
            ctx = _quiet_command(command, lenient).make_context(name, list(args), parent=parent)
            problems = _repository_file_problems(command, ctx.params)
            return "; ".join(problems) or None
    except click.UsageError as error:
        return error.format_message()


def all_command_lines() -> list[CommandLine]:
    return [
        line
        for page in PAGES
        for line in commands_in_markdown(page.read_text(encoding="utf-8"), str(page.relative_to(REPO)))
    ]


def test_every_command_line_in_the_readme_and_the_docs_parses_against_the_cli():
    lines = all_command_lines()
    wrong = [
        f"{line.where}: {line.text}\n    {problem}"
        for line in lines
        if (problem := check_command(line.args, line.lenient))
    ]
    assert not wrong, "Command lines the CLI would refuse:\n" + "\n".join(wrong)
    assert len(lines) > 100  # the collector finds the manual's commands, not nothing


def _commands_with_paths(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands_with_paths(sub, (*path, name))


def test_every_example_in_the_clis_own_help_parses():
    """The examples of `--help` (each command's docstring) are documentation too."""
    checked, wrong = 0, []
    for path, command in _commands_with_paths(cli):
        lines = list(enumerate((command.help or "").splitlines(), start=1))
        for _, line in _logical_lines(lines):
            for args in commands_in_shell_line(line.strip()):
                checked += 1
                if problem := check_command(tuple(args), "..." in args):
                    wrong.append(f"mnist-dnn {' '.join(path)} --help: {line.strip()}\n    {problem}")
    assert not wrong, "\n".join(wrong)
    assert checked > 30


def test_every_command_has_its_page_with_command_lines():
    pages = {line.where.split(":")[0] for line in all_command_lines()}
    names = [name for name in cli.commands if name != "config"] + ["config"]
    missing = [name for name in names if f"docs/commands/{name}.md" not in pages]
    assert missing == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mnist-dnn train --epoch 3", "No such option '--epoch'"),
        ("mnist-dnn train --backend jaxx", "'jaxx' is not one of"),
        ("mnist-dnn train --epochs three", "'three' is not a valid integer"),
        ("mnist-dnn trian", "No such command 'trian'"),
        ("mnist-dnn config shwo", "No such command 'shwo'"),
        ("mnist-dnn export runs/a runs/b --format onnx", "unexpected extra argument"),
        ("mnist-dnn export runs/a", "Missing option '--format'"),
        ("mnist-dnn tune --trials 3", "Missing option '--space'"),
        ("mnist-dnn sweep --workers 0", "0 is not in the range x>=1"),
        ("mnist-dnn train --config configs/adam.toml", "configs/adam.toml: no such file in this repository"),
        ("mnist-dnn eval --custom-csv custom_digits/30.csv", "custom_digits/30.csv: no such file"),
    ],
)
def test_a_wrong_command_line_is_reported_with_clicks_message(line, message):
    [args] = commands_in_shell_line(line)
    problem = check_command(tuple(args))
    assert problem is not None and message in problem


def test_placeholders_and_files_of_the_readers_own_pass():
    for line in [
        "mnist-dnn train --resume runs/<run>",
        "mnist-dnn plot runs/A runs/B --out compare",
        "mnist-dnn predict photo.jpg custom_digits --model runs/RUN/model.keras --json",
        "mnist-dnn digitize custom_digits/source/{3,8,9,5,4}.png --method naive --out naive",
        "mnist-dnn --help",
        "mnist-dnn sweep --help --no-such-flag",
    ]:
        [args] = commands_in_shell_line(line)
        assert check_command(tuple(args)) is None, line


def test_an_elided_line_may_leave_out_required_options_but_not_misspell_one():
    [args] = commands_in_shell_line("mnist-dnn tune ... --epochs 5 --executor ray --workers 2")
    assert check_command(tuple(args), lenient=True) is None
    [args] = commands_in_shell_line("mnist-dnn tune ... --executor rays")
    assert "'rays' is not one of" in check_command(tuple(args), lenient=True)


def test_the_collector_reads_prompts_continuations_comments_pipes_and_env_prefixes():
    markdown = "\n".join(
        [
            "Run `mnist-dnn train --epochs 1` or `mnist-dnn fetch",
            "--data-dir d` first; `pip install mnist-dnn` is not a command.",
            "",
            "```console",
            "$ mnist-dnn sweep --set model.dropout=0,0.5 \\",
            "    --seeds 0-1   # two seeds",
            "mnist-dnn train --this-is-output",
            "$ MNIST_DNN_DATA=/d mnist-dnn fetch 2>/dev/null | tail -1 && mnist-dnn plot > log.txt",
            "```",
            "",
            "```python",
            "mnist-dnn train --not-shell",
            "```",
            "",
            "```sh",
            "make train && .venv/bin/mnist-dnn show --index 7  # a comment with mnist-dnn train --bad",
            "```",
        ]
    )
    found = [(line.args, line.lenient) for line in commands_in_markdown(markdown, "x.md")]
    assert found == [
        (("sweep", "--set", "model.dropout=0,0.5", "--seeds", "0-1"), False),
        (("fetch",), False),
        (("plot",), False),
        (("show", "--index", "7"), False),
        (("train", "--epochs", "1"), True),
        (("fetch", "--data-dir", "d"), True),
    ]


def _nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = REPO / config["docs_dir"]
    nav = _nav_pages(config["nav"])
    pages = sorted(str(path.relative_to(docs)) for path in docs.rglob("*.md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav))


def test_the_strict_build_fails_on_pages_left_out_and_broken_links():
    """`make docs` relies on these settings: without them --strict lets both through."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["validation"]["nav"]["omitted_files"] == "warn"
    assert config["validation"]["nav"]["not_found"] == "warn"
    assert config["validation"]["links"]["not_found"] == "warn"
    assert config["validation"]["links"]["anchors"] == "warn"
    assert config["theme"]["font"] is False  # no Google Fonts: the site builds and reads offline
    plugins = [next(iter(p)) if isinstance(p, dict) else p for p in config["plugins"]]
    assert not {"privacy", "social", "material/privacy", "material/social"} & set(plugins)


@pytest.mark.slow
def test_the_docs_build_in_strict_mode(tmp_path):
    """The site builds with no warning (broken link, missing anchor, page not in the nav, bad docstring)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").exists()
