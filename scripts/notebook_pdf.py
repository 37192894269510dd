"""An executed notebook as a PDF, with pip packages only: nbconvert -> pandoc (pypandoc-binary) -> Typst (typst).

nbconvert turns the notebook into pandoc Markdown with the template ``pdf/notebook.md.j2`` and extracts the
figures; the pandoc binary inside the ``pypandoc-binary`` wheel converts that to Typst markup, with the Lua
filter ``pdf/cnnvis.lua`` turning outputs into grey boxes and figures into page-wide images; the Typst compiler
of the ``typst`` wheel sets it in the style ``pdf/cnnvis.typ``, followed by an appendix with the source of the
``helpers`` modules the notebook calls (see `helpers_used`). Only Typst's built-in fonts are used, so the PDF is
the same on every machine; it is a PDF/A-2b, for which Typst checks that every character has a glyph (see
`compile_typst`).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STYLE = Path(__file__).resolve().parent / "pdf"
WIDGET_TAG = "widget"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# What an output shows when it has several representations: figures first; HTML never (Typst cannot set it).
DISPLAY_PRIORITY = ["image/png", "image/jpeg", "image/svg+xml", "text/markdown", "text/latex", "text/plain"]
# Jupyter's Markdown is CommonMark with GitHub's extensions and $-math: pandoc's commonmark_x minus what Jupyter
# does not do (typographic quotes, ^super^/~sub~scripts, :emoji:, YAML blocks, definition lists, "A." lists).
PANDOC_FROM = ("commonmark_x-smart-subscript-superscript-emoji-yaml_metadata_block-definition_lists-fancy_lists"
               "+autolink_bare_uris")
# Longest run of characters without a space that fits one line of code at cnnvis.typ's code-size; longer runs
# (a path, a long number list without spaces) are broken here, since Typst breaks code lines only at spaces.
WRAP_COLUMNS = 90
INSTALL = "install the export's packages: .venv/bin/pip install -r requirements.txt"


class PdfError(Exception):
    """The conversion failed; the message says why in one line."""


@dataclass
class Conversion:
    """What `notebook_pdf` did: the appendix modules, whether the PDF is a PDF/A-2b, the characters drawn as
    boxes (no font has them), seconds per stage."""

    called: list[str] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)
    pdf_a: bool = False
    missing_glyphs: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def fenced(text: str, info: str = "") -> str:
    """``text`` as a fenced code block whose fence is longer than any run of backticks inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip(chr(10))}\n{fence}"


def wrap(text: str, columns: int = WRAP_COLUMNS) -> str:
    """Break every run of more than ``columns`` non-space characters into lines of ``columns``."""
    def split(match: re.Match) -> str:
        run = match.group(0)
        return "\n".join(run[i:i + columns] for i in range(0, len(run), columns))
    return re.sub(rf"\S{{{columns + 1},}}", split, text)


def printable(nb):
    """A copy of the notebook as the PDF shows it: widget cells (tag ``widget``) and widget outputs dropped."""
    import copy

    nb = copy.deepcopy(nb)
    nb.cells = [cell for cell in nb.cells if WIDGET_TAG not in cell.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if WIDGET_MIME not in out.get("data", {})]
    return nb


def notebook_markdown(nb, folder: Path, stem: str) -> str:
    """The notebook as pandoc Markdown; its figures are written to ``folder/<stem>_files/``."""
    from nbconvert import MarkdownExporter
    from traitlets.config import Config

    config = Config()
    config.NbConvertBase.display_data_priority = DISPLAY_PRIORITY
    exporter = MarkdownExporter(config=config, template_file=str(STYLE / "notebook.md.j2"),
                                filters={"fenced": fenced, "wrap": wrap})
    body, resources = exporter.from_notebook_node(nb, resources={"metadata": {"name": stem},
                                                                 "output_files_dir": f"{stem}_files"})
    for name, data in resources.get("outputs", {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return body


def pandoc_binary() -> Path:
    """The pandoc inside the pypandoc-binary wheel (never a system pandoc: the output is tested with this one)."""
    try:
        import pypandoc
    except ImportError:
        raise PdfError(f"pypandoc-binary is missing: {INSTALL}") from None
    binary = Path(pypandoc.__file__).parent / "files" / ("pandoc.exe" if sys.platform == "win32" else "pandoc")
    if not binary.is_file():
        raise PdfError(f"pypandoc without its pandoc binary is installed: {INSTALL} (pypandoc-binary)")
    return binary


def markdown_to_typst(markdown: str, folder: Path) -> str:
    """Typst markup of the notebook's Markdown, by pandoc with the filter cnnvis.lua (no preamble); image paths
    are relative to ``folder``."""
    result = subprocess.run([str(pandoc_binary()), "--from", PANDOC_FROM, "--to", "typst", "--wrap=preserve",
                             "--lua-filter", str(STYLE / "cnnvis.lua")],
                            input=markdown, capture_output=True, text=True, encoding="utf-8", cwd=folder)
    if result.returncode != 0:
        raise PdfError(f"pandoc failed: {(result.stderr.strip().splitlines() or ['no message'])[-1]}")
    return result.stdout


# ---- the appendix: which helpers modules the notebook calls ----

def helpers_exports(package: Path) -> dict[str, str]:
    """Public name -> module file stem, from the package's ``__init__.py`` (``from .mod import name``)."""
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = node.module.split(".")[0]
    return names


def module_imports(path: Path) -> set[str]:
    """The package modules a helpers module imports (``from .x import ...``, also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import x
                found.update(alias.name for alias in node.names)
    return found


def cell_python(source: str) -> ast.AST | None:
    """A code cell's syntax tree after IPython's transforms (magics become calls); None if it does not parse."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None


def helpers_used(nb, package: Path = ROOT / "helpers") -> tuple[list[str], list[str]]:
    """The helpers modules the notebook's code cells call, and the ones those import, as file names.

    Read from the cells' code: ``import helpers as H`` then ``H.name``, ``from helpers import name``,
    ``from helpers.module import ...`` and ``import helpers.module``. A name is mapped to its module through
    ``helpers/__init__.py``'s re-exports, and the modules' own ``from .x import`` statements give the rest.

    Returns:
        ``(called, imported)``: ``called`` in the order the notebook first uses them, ``imported`` (the
        modules they need that the notebook does not call itself) sorted; e.g. ``["ascent.py"], ["config.py"]``.
    """
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    exports = helpers_exports(package)
    called: list[str] = []
    aliases, star = set(), False  # names bound to the package; `from helpers import *` seen (kept across cells)

    def use(module: str | None) -> None:
        if module in modules and module not in called:
            called.append(module)

    for cell in nb.cells:
        if cell.cell_type != "code" or (tree := cell_python(cell.source)) is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == "helpers":
                        if len(parts) > 1:
                            use(parts[1])
                        if alias.asname or len(parts) == 1:
                            aliases.add(alias.asname or "helpers")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                if parts[0] != "helpers":
                    continue
                for alias in node.names:
                    if alias.name == "*":
                        star = True
                    use(parts[1] if len(parts) > 1 else exports.get(alias.name, alias.name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                use(exports.get(node.attr, node.attr))
            elif star and isinstance(node, ast.Name):
                use(exports.get(node.id))
    # the modules those import, transitively
    imported: set[str] = set()
    todo = list(called)
    while todo:
        for module in module_imports(package / f"{todo.pop()}.py") & modules:
            if module not in called and module not in imported:
                imported.add(module)
                todo.append(module)
    return [f"{m}.py" for m in called], [f"{m}.py" for m in sorted(imported)]

# ---- Typst ----

MISSING_GLYPH = re.compile(r'the text `"(.+?)"` could not be displayed with font')


def typst_main(body: str, called: list[str], imported: list[str]) -> str:
    """The main Typst file: the style, the notebook's body, and the appendix of the given helpers modules."""
    lines = ['#import "cnnvis.typ": *',
             "#show: notebook.with(title: sys.inputs.title, name: sys.inputs.name,",
             "  matriculation: sys.inputs.matriculation, date: sys.inputs.date)", "", body]
    if called:
        listed = ", ".join(f"`{m}`" for m in called)
        lines += ["", "#pagebreak(weak: true)", "= Appendix: the `helpers` source this notebook calls", "",
                  "#par(justify: false)[The notebook calls the modules " + listed + " of the project's `helpers`"
                  " package" + (f"; they import {', '.join(f'`{m}`' for m in imported)}." if imported else ".")
                  + " Their source follows, as packed in the submission's ZIP.]", ""]
        lines += [f'#source-file("helpers/{m}", "appendix/{m}", note: [called from the notebook])' for m in called]
        lines += [f'#source-file("helpers/{m}", "appendix/{m}", note: [imported by the modules above])'
                  for m in imported]
    return "\n".join(lines) + "\n"


def compile_typst(main: Path, pdf: Path, inputs: dict[str, str]) -> tuple[bool, list[str]]:
    """Compile ``main`` to ``pdf`` with Typst's own fonts only.

    First as PDF/A-2b, for which Typst refuses text it cannot draw and names every such character; if Typst
    refuses (those characters, or anything else PDF/A forbids), again as a plain PDF, where such characters
    show as boxes. Returns ``(is_pdf_a, characters_without_glyph)``. Raises PdfError when the plain PDF fails.
    """
    try:
        import typst
    except ImportError:
        raise PdfError(f"the Typst compiler is missing: {INSTALL} (typst)") from None
    options = {"root": str(main.parent), "ignore_system_fonts": True, "sys_inputs": inputs}
    try:
        typst.compile(str(main), output=str(pdf), pdf_standards="a-2b", **options)
        return True, []
    except typst.TypstError as e:
        missing = sorted(set("".join(MISSING_GLYPH.findall(str(e)))))
    try:
        typst.compile(str(main), output=str(pdf), **options)
    except typst.TypstError as e:
        raise PdfError(f"Typst failed: {e.message}") from None
    return False, missing


def notebook_pdf(nb, pdf: Path, *, title: str, name: str, matriculation: str, date: str,
                 appendix: bool = True) -> Conversion:
    """Write the executed notebook ``nb`` as ``pdf``: title block, cells, outputs, figures, and (``appendix``)
    the source of the helpers modules it calls. Raises PdfError."""
    import time

    report = Conversion()
    nb = printable(nb)
    with tempfile.TemporaryDirectory(prefix="cnnvis-pdf-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        markdown = notebook_markdown(nb, folder, "notebook")
        report.seconds["nbconvert"] = time.perf_counter() - start
        start = time.perf_counter()
        body = markdown_to_typst(markdown, folder)
        report.seconds["pandoc"] = time.perf_counter() - start
        if appendix:
            report.called, report.imported = helpers_used(nb)
            (folder / "appendix").mkdir()
            for module in report.called + report.imported:
                shutil.copyfile(ROOT / "helpers" / module, folder / "appendix" / module)
        shutil.copyfile(STYLE / "cnnvis.typ", folder / "cnnvis.typ")
        main = folder / "main.typ"
        main.write_text(typst_main(body, report.called, report.imported), encoding="utf-8")
        start = time.perf_counter()
        report.pdf_a, report.missing_glyphs = compile_typst(
            main, pdf, {"title": title, "name": name, "matriculation": matriculation, "date": date})
        report.seconds["typst"] = time.perf_counter() - start
    return report
