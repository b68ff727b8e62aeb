"""The package's shape: each subpackage imports only the ones below it, and nothing imports the CLI.

    cli -> api (what `from mnist_dnn import ...` gives) -> experiments, serve, export -> training
      -> handwriting -> data -> runs -> core
    (figures: api, experiments and serve draw with it; it reads runs and core)

Read from the source with `ast`, every module under mnist_dnn/ at any depth, relative
imports and lazy imports inside functions included, so an arrow hidden behind a
function-level import is caught too. The checks take the package's folder, so the tests
at the bottom can feed them a small wrong package and see them fail.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mnist_dnn"

# Which part may import which; a part's modules may always import each other (the cycle check
# still applies). A part is a subpackage, or a top-level module ("__init__" is mnist_dnn itself:
# __version__, and the API re-exported lazily).
ALLOWED = {
    "__init__": {"core", "api"},
    "core": set(),
    "runs": {"core"},
    "data": {"core", "runs"},  # preprocess names its file in a run directory (runs.files)
    "handwriting": {"core", "data", "runs"},
    "figures": {"core", "runs"},
    "training": {"core", "data", "runs", "handwriting"},  # evaluate scores your own Digits
    "experiments": {"core", "data", "runs", "training", "handwriting", "figures"},
    "serve": {"core", "data", "runs", "training", "handwriting", "figures"},
    "export": {"core", "data", "runs", "training"},
    "api": {"core", "data", "runs", "training", "handwriting", "figures", "experiments"},
    "cli": {
        "__init__",
        "api",
        "core",
        "data",
        "runs",
        "training",
        "handwriting",
        "figures",
        "experiments",
        "serve",
        "export",
    },
    "__main__": {"cli"},
}


def _modules(package: Path) -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module of the package, packages' __init__ under the package's name."""
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source (a package counts as its __init__)."""
    names = dict(_modules(package))
    graph = {}
    for module, path in names.items():
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _source(here, node)
                found.update(f"{source}.{a.name}" if f"{source}.{a.name}" in names else source for a in node.names)
        graph[module] = {name for name in found if name in names} - {module}
    return graph


def _source(here: str, node: ast.ImportFrom) -> str:
    """The module a `from ... import` reads from, relative imports resolved against the package `here`."""
    if not node.level:
        return node.module or ""
    base = here.split(".")[: len(here.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _part(module: str) -> str:
    """mnist_dnn.runs.directory -> runs; mnist_dnn.export -> export; mnist_dnn -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def wrong_arrows(package: Path, allowed: dict[str, set[str]]) -> list[str]:
    """Every import from one part into another that `allowed` does not list."""
    return [
        f"{module} -> {target}"
        for module, targets in sorted(_imports(package).items())
        for target in sorted(targets)
        if _part(target) != _part(module) and _part(target) not in allowed.get(_part(module), set())
    ]


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """The first cycle found, as a path that ends where it starts; [] when there is none."""
    done, path = set(), []

    def visit(node) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if cycle := visit(target):
                return cycle
        path.pop()
        done.add(node)
        return []

    for node in sorted(graph):
        if cycle := visit(node):
            return cycle
    return []


def cli_importers(package: Path) -> list[str]:
    """Modules outside the CLI that import it: only the entry point (__main__) may."""
    return [
        module
        for module, targets in sorted(_imports(package).items())
        if _part(module) not in ("cli", "__main__") and any(_part(target) == "cli" for target in targets)
    ]


def private_uses(package: Path) -> list[str]:
    """Every `_name` of one module that another reaches: `from x import _y`, or `x._y` on an imported module."""
    names = dict(_modules(package))
    found = []
    for module, path in names.items():
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = {}  # local name -> the package's module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _source(here, node)
                for alias in node.names:
                    if f"{source}.{alias.name}" in names:
                        bound[alias.asname or alias.name] = f"{source}.{alias.name}"
                    elif source in names and source != module and _private(alias.name):
                        found.append(f"{module}: from {source} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in names and alias.asname:
                        bound[alias.asname] = alias.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = _dotted(node.value)
                target = bound.get(owner, owner)
                if target in names and target != module:
                    found.append(f"{module}: {owner}.{node.attr}")
    return sorted(found)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _dotted(node: ast.expr) -> str:
    """`a.b.c` -> "a.b.c"; anything else -> ""."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (owner := _dotted(node.value)):
        return f"{owner}.{node.attr}"
    return ""


# --- the package as it is ---------------------------------------------------------------------------------------------


def test_imports_flow_down_the_allowed_arrows():
    assert wrong_arrows(PACKAGE, ALLOWED) == []


def test_the_allowed_arrows_have_no_cycle():
    assert import_cycle(ALLOWED) == []


def test_no_import_cycle_between_modules():
    assert import_cycle(_imports(PACKAGE)) == []


def test_nothing_imports_the_cli():
    assert cli_importers(PACKAGE) == []


def test_every_module_is_in_a_part_the_arrows_name():
    assert sorted({_part(module) for module, _ in _modules(PACKAGE)} - set(ALLOWED)) == []


@pytest.mark.xfail(strict=True, reason="phase 2: public run API")
def test_no_module_uses_another_modules_private_names():
    assert private_uses(PACKAGE) == []


# --- the checks fail on a package that breaks them ----------------------------------------------------------------


def _write_package(root: Path, files: dict[str, str]) -> Path:
    """A package `mnist_dnn` under root: relative path -> source; every folder gets an __init__.py."""
    package = root / "mnist_dnn"
    for name, source in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(package).parents:
            (package / folder / "__init__.py").touch()
        path.write_text(source)
    return package


def test_a_lazy_upward_import_is_a_wrong_arrow(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "core/config.py": "def load():\n    from mnist_dnn.training import model\n",
            "training/model.py": "from mnist_dnn.core.config import load\n",
        },
    )
    assert wrong_arrows(package, ALLOWED) == ["mnist_dnn.core.config -> mnist_dnn.training.model"]


def test_a_relative_upward_import_is_a_wrong_arrow(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "runs/directory.py": "from ..data import mnist\nfrom . import files\n",
            "runs/files.py": "",
            "data/mnist.py": "",
        },
    )
    assert wrong_arrows(package, ALLOWED) == ["mnist_dnn.runs.directory -> mnist_dnn.data.mnist"]


def test_a_cycle_inside_one_part_is_found(tmp_path):
    package = _write_package(
        tmp_path,
        {"training/a.py": "from . import b\n", "training/b.py": "def f():\n    from mnist_dnn.training import a\n"},
    )
    assert wrong_arrows(package, ALLOWED) == []
    assert import_cycle(_imports(package)) == ["mnist_dnn.training.a", "mnist_dnn.training.b", "mnist_dnn.training.a"]


def test_importing_the_cli_from_below_is_found(tmp_path):
    package = _write_package(tmp_path, {"export.py": "import mnist_dnn.cli.app\n", "cli/app.py": ""})
    assert cli_importers(package) == ["mnist_dnn.export"]
    assert wrong_arrows(package, ALLOWED) == ["mnist_dnn.export -> mnist_dnn.cli.app"]


def test_reaching_for_another_modules_private_name_is_found(tmp_path):
    package = _write_package(
        tmp_path,
        {
            "experiments/sweep.py": "def _split():\n    pass\n\n\ndef split():\n    _split()\n",
            "experiments/tune.py": "from mnist_dnn.experiments.sweep import _split\n",
            "experiments/bundles.py": "from mnist_dnn.experiments import sweep as s\n\ns._split()\ns.split()\n",
        },
    )
    assert private_uses(package) == [
        "mnist_dnn.experiments.bundles: s._split",
        "mnist_dnn.experiments.tune: from mnist_dnn.experiments.sweep import _split",
    ]
