"""docs/api.md cannot drift: it lists every name of helpers.__all__ exactly once, and every signature it shows
has the real object's parameters (names, kinds, which have defaults, and the literal default values)."""

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import helpers
from helpers import objectives

PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"
ENTRY = re.compile(r"^- `((?:objectives\.)?[A-Za-z_]\w*)(\([^`]*\))?` — \S")


def entries() -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for line in PAGE.read_text().splitlines() if (m := ENTRY.match(line))]


def resolve(name: str) -> object:
    module, _, attr = name.rpartition(".")
    return getattr(objectives if module else helpers, attr)


def has_signature(obj: object) -> bool:
    """Functions and classes one calls; not modules, constants, exceptions or warnings."""
    if inspect.isclass(obj):
        return not issubclass(obj, BaseException)
    return callable(obj) and not inspect.ismodule(obj)


def documented(signature: str) -> list[tuple[str, inspect._ParameterKind, bool, object]]:
    """``(name, kind, has_default, literal default or ...)`` of each parameter of a signature written on the page."""
    args = ast.parse(f"def f{signature}: pass").body[0].args
    positional = [(a, inspect.Parameter.POSITIONAL_ONLY) for a in args.posonlyargs]
    positional += [(a, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + args.defaults
    params = [(a.arg, kind, d is not None, d) for (a, kind), d in zip(positional, defaults, strict=True)]
    if args.vararg:
        params.append((args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, False, None))
    params += [(a.arg, inspect.Parameter.KEYWORD_ONLY, d is not None, d)
               for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        params.append((args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, False, None))
    return params


def literal(node: ast.expr) -> object:
    """The value of a default written as a literal (or a product/quotient of literals); ``...`` otherwise."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        try:
            return eval(compile(ast.Expression(node), "<doc>", "eval"), {"__builtins__": {}})  # 2/255, 1e-4 * 224
        except NameError:  # a named constant
            return ...


def test_the_page_lists_every_public_name_exactly_once():
    names = [name for name, _ in entries() if not name.startswith("objectives.")]
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"listed more than once: {repeated}"
    assert set(names) - set(helpers.__all__) == set(), "listed but not in helpers.__all__"
    assert set(helpers.__all__) - set(names) == set(), "in helpers.__all__ but not on docs/api.md"


def test_the_page_lists_every_objective():
    listed = {name.removeprefix("objectives.") for name, _ in entries() if name.startswith("objectives.")}
    public = {name for name, obj in vars(objectives).items() if not name.startswith("_") and inspect.isfunction(obj)
              and obj.__module__ == objectives.__name__ and inspect.signature(obj).return_annotation == "Objective"}
    assert listed == public


@pytest.mark.parametrize("name, signature", entries(), ids=[name for name, _ in entries()])
def test_each_signature_matches_the_real_one(name, signature):
    obj = resolve(name)
    if not has_signature(obj):
        assert signature is None, f"{name} is not called: list it without parentheses"
        return
    assert signature is not None, f"{name} is callable: give its signature"
    real = list(inspect.signature(obj).parameters.values())
    shown = documented(signature)
    assert [(p.name, p.kind, p.default is not p.empty) for p in real] == [s[:3] for s in shown]
    for p, (_, _, has_default, node) in zip(real, shown, strict=True):
        if not has_default or p.default is dataclasses.MISSING:
            continue
        value = literal(node)
        if value is ... or repr(p.default) == "<factory>":  # not shown, a named constant, a default factory
            continue
        assert value == p.default or (isinstance(value, float) and value == pytest.approx(p.default)), p.name


def test_the_sample_photo_names_on_the_page_are_the_real_ones():
    line = next(line for line in PAGE.read_text().splitlines() if line.startswith("- `SAMPLE_PHOTOS`"))
    assert tuple(re.findall(r"`(\w+)`", line.partition(":")[2])) == helpers.SAMPLE_PHOTOS
