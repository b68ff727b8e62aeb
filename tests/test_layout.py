"""The package's shape: imports flow one way, config -> stages -> experiment -> custom_experiment/sweep -> cli.

Read from the source with `ast`, lazy imports inside functions included, so a cycle hidden
behind a function-level import is caught too.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mnist_dnn"

# Lower layers never import higher ones; inside the stage layer only the cycle check applies.
LAYERS = {
    "errors": 0,
    "atomic": 0,
    "run_files": 0,
    "config": 1,
    "experiment": 3,
    "bundles": 3,  # a sweep's runs trained together through experiment's stages
    "custom_experiment": 4,
    "sweep": 4,
    "executors": 4,  # where a sweep's bundles train: the sweep's plan and summary, bundles.train_bundle
    "tune": 4,  # a search over experiment's runs, next to sweep
    "options": 5,
    "cli": 5,
    "launch": 6,  # the console script: Ctrl-C during start-up, then the CLI
    "__main__": 6,
}
STAGE = 2  # every other module: data, preprocess, model, train, evaluate, runs, plots, ...


def _imports() -> dict[str, set[str]]:
    """module -> the mnist_dnn modules it imports anywhere in its source."""
    graph = {}
    for path in PACKAGE.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "mnist_dnn":
                    found.update(alias.name for alias in node.names)
                elif node.module.startswith("mnist_dnn."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mnist_dnn."))
        graph[path.stem] = {name for name in found if (PACKAGE / f"{name}.py").exists()} - {path.stem}
    return graph


def test_imports_flow_one_way_through_the_layers():
    wrong = [
        f"{module} -> {target}"
        for module, targets in _imports().items()
        for target in targets
        if LAYERS.get(target, STAGE) > LAYERS.get(module, STAGE)
    ]
    assert wrong == []


def test_no_import_cycle_in_the_package():
    graph = _imports()
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module) :] + [module]))
        if module in done:
            return
        path.append(module)
        for target in sorted(graph[module]):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_nothing_imports_the_cli():
    assert [module for module, targets in _imports().items() if "cli" in targets and module != "launch"] == []
