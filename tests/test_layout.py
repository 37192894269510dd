"""The package's layout: what the sheets need at the top of ``helpers``, the lecture's further techniques in
``helpers.toolbox``, the attribution checks in ``helpers.trust``; the import graph between them has no cycle and
points one way only (top <- toolbox <- trust)."""

import ast
import graphlib
import importlib
import re
from pathlib import Path

import pytest

import helpers

PACKAGE = Path(helpers.__file__).resolve().parent
LAYERS = {"": 0, "toolbox": 1, "trust": 2}  # a module may import its own layer and the ones below it


def module_name(path: Path) -> str:
    """``helpers/toolbox/engine.py`` -> ``"toolbox.engine"``; a package's ``__init__.py`` -> its package name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules that ``path`` imports, also inside functions, by their names relative to ``helpers``."""
    here = module_name(path).split(".") if path.name == "__init__.py" else module_name(path).split(".")[:-1]
    here = [p for p in here if p]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            candidates = [".".join(base + [a.name]) for a in node.names] + [".".join(base)]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            candidates = [n.removeprefix("helpers.") for n in names if n.startswith("helpers.")]
        else:
            continue
        found |= {c for c in candidates if c in modules}
    return found


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in files}
    return {module_name(p): imports(p, modules) - {module_name(p)} for p in files}


def layer(module: str) -> int:
    return LAYERS[module.split(".")[0]] if "." in module or module in LAYERS else 0


def test_the_import_graph_has_no_cycle():
    edges = {m: deps for m, deps in graph().items() if m != ""}  # helpers/__init__ imports everything, by design
    try:
        order = list(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")
    assert "_checks" in order and "toolbox.engine" in order and "trust.scores" in order


def test_imports_point_from_the_toolbox_and_trust_to_the_top_level_never_back():
    wrong = [f"{m} imports {d}" for m, deps in graph().items() if m != "" for d in deps
             if layer(d) > layer(m) and not (m in LAYERS and d.startswith(f"{m}."))]
    assert not wrong


def test_the_private_module_is_a_leaf_below_everything():
    assert graph()["_checks"] <= {"images", "config"}  # the pixel checks' home, and its settings
    assert not (graph()["images"] | graph()["config"]) & {"_checks"}


def test_every_module_is_importable_and_every_public_name_resolves():
    for module in graph():
        __import__(f"helpers.{module}" if module else "helpers")
    assert all(hasattr(helpers, name) for name in helpers.__all__)


def resolves(dotted: str) -> bool:
    """Whether ``helpers.a.b`` names a module or an attribute of one (after the layout moves: no old path)."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            return False
    return True


def test_every_helpers_name_in_the_docstrings_exists():
    reference = re.compile(r":(?:func|class|mod|data|meth|attr):`~?(helpers(?:\.\w+)+)|``(helpers(?:\.\w+)+)")
    stale = sorted({f"{path.relative_to(PACKAGE.parent)}: {name}" for path in PACKAGE.rglob("*.py")
                    for match in reference.finditer(path.read_text(encoding="utf-8"))
                    for name in [match.group(1) or match.group(2)] if not resolves(name)})
    assert not stale


def test_pyproject_lists_every_subpackage_so_a_plain_install_has_them():
    """``[tool.setuptools] packages`` is an explicit list: a sub-package missing from it is missing from a
    non-editable ``pip install .`` (the editable install of the tests would not notice)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert set(listed["packages"]) == on_disk
