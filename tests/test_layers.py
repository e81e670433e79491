"""facegen's packages form layers: a module imports only from its own layer or the layers below it, so the core
(geometry, face models, renderer) never depends on the data pipeline, the tasks or the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import facegen

#: Layer of each top-level module or package of facegen, bottom first.
LAYERS = {
    "errors": 0,
    "atomic": 0,
    "signals": 0,
    "safe_pickle": 0,
    "geometry": 1,
    "morphable": 2,
    "render": 3,
    "decoder": 4,
    "texture": 4,
    "losses": 5,
    "nets": 5,
    "evaluation": 5,
    "export": 5,
    "fitting": 5,
    "data": 6,
    "predictions": 7,
    "callbacks": 8,
    "loggers": 8,
    "tasks": 9,
    "commands": 10,
    "cli": 11,
}
ROOT = Path(facegen.__file__).parent


def _part(module: str) -> str | None:
    """The top-level part of a ``facegen.*`` module name (None for ``facegen`` itself)."""
    names = module.split(".")
    return names[1] if names[0] == "facegen" and len(names) > 1 else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``facegen`` import in ``path``, function-local ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, module) for line, module in found if module.split(".")[0] == "facegen"]


def test_every_package_has_a_layer():
    parts = {
        p.stem for p in ROOT.iterdir() if (p.suffix == ".py" or p.is_dir()) and not p.name.startswith("_")
    }
    assert parts - {"py.typed"} == set(LAYERS)


def test_no_import_runs_up_a_layer():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        own = path.relative_to(ROOT).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        for line, module in imports_of(path):
            target = _part(module)
            if target is not None and target != own and LAYERS[target] > LAYERS[own]:
                upward.append(f"{path.relative_to(ROOT.parent)}:{line} ({own}) imports {module}")
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from facegen.tasks.mofa import MoFA\n")
    assert imports_of(module) == [(2, "facegen.tasks.mofa")]


def test_modules_over_400_lines_say_why():
    """Small modules with one job each: a module over 400 lines states in its docstring why it stays whole."""
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > 400:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if "Why one module over 400 lines:" not in docstring:
                long.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not long, long
