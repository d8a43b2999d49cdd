"""The shape of the code, checked: rooms of one job, layers that point one way, and a
seam that keeps every method's knowledge in its task.

- no module in ``img2img/`` or ``tools/`` over 400 lines, no function over 60;
- outside ``img2img/tasks/`` no code names a task (no string equal to a task's name
  outside docstrings);
- ``nets/`` imports nothing above it; ``tasks/`` imports neither the engine, inference,
  evaluation, export nor the command line; ``data/`` imports no task, engine, inference
  or evaluation;
- no import cycles between img2img's modules, counting imports made inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "img2img"
MAX_LINES, MAX_FUNCTION = 400, 60


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(path: Path) -> set[str]:
    """The img2img modules ``path`` imports, at module level or inside functions."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name.startswith("img2img"):
                found.add(name)
    found.discard(module_name(path))
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def python_files() -> list[Path]:
    return sorted([*PKG.rglob("*.py"), *(REPO / "tools").glob("*.py")])


def test_no_module_over_400_lines_and_no_function_over_60():
    big, long = [], []
    for path in python_files():
        text = path.read_text()
        if len(text.splitlines()) > MAX_LINES:
            big.append(f"{path.relative_to(REPO)} ({len(text.splitlines())})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION:
                    long.append(f"{path.relative_to(REPO)}:{node.name} ({length})")
    assert not big, f"modules over {MAX_LINES} lines: {big}"
    assert not long, f"functions over {MAX_FUNCTION} lines: {long}"


def test_no_code_outside_the_tasks_names_a_task():
    from img2img.tasks import BUILTIN

    names = set(BUILTIN) | {p.stem for p in (PKG / "tasks").glob("*.py")} - {"__init__", "base"}
    leaks = []
    for path in PKG.rglob("*.py"):
        if "tasks" in path.relative_to(PKG).parts:
            continue
        tree = ast.parse(path.read_text())
        docs = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        leaks += [f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in names and id(node) not in docs]
    assert not leaks, f"task names outside img2img/tasks: {leaks}"


BASE = {"img2img", "img2img.errors", "img2img.log", "img2img.files", "img2img.lazy", "img2img.pretrained",
        "img2img.ownership"}


@pytest.mark.parametrize("room, allowed, forbidden", [
    ("img2img.nets", BASE | {"img2img.config"}, None),
    ("img2img.tasks", None, ("img2img.engine", "img2img.trainer", "img2img.inference", "img2img.evaluate",
                             "img2img.export", "img2img.cli", "img2img.demo", "img2img.model_io")),
    ("img2img.data", None, ("img2img.tasks", "img2img.engine", "img2img.trainer", "img2img.inference",
                            "img2img.evaluate", "img2img.export", "img2img.cli", "img2img.demo")),
    ("img2img.config", BASE, None),
])
def test_layers_point_one_way(room, allowed, forbidden):
    wrong = []
    for name, imported in GRAPH.items():
        if not (name == room or name.startswith(room + ".")):
            continue
        for target in imported:
            inside = target == room or target.startswith(room + ".")
            below = inside or (allowed is not None and any(target == a or target.startswith(a + ".") and a != "img2img"
                                                            for a in allowed))
            if allowed is not None and not below:
                wrong.append(f"{name} -> {target}")
            if forbidden is not None and any(target == f or target.startswith(f + ".") for f in forbidden):
                wrong.append(f"{name} -> {target}")
    assert not wrong, f"{room} imports what it must not: {sorted(wrong)}"


def test_no_import_cycles():
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


def test_every_package_says_what_it_owns():
    bare = [module_name(p) for p in PKG.rglob("__init__.py") if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert not bare, f"packages without a docstring: {bare}"
