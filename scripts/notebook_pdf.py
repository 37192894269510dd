"""An executed notebook as a PDF, with pip packages only: nbconvert -> pandoc (pypandoc-binary) -> Typst (typst).

nbconvert turns the notebook into pandoc Markdown with the template ``pdf/notebook.md.j2`` and extracts the
figures; the pandoc binary inside the ``pypandoc-binary`` wheel converts that to Typst markup, with the Lua
filter ``pdf/cnnvis.lua`` turning outputs into grey boxes and figures into page-wide images; the Typst compiler
of the ``typst`` wheel sets it in the style ``pdf/cnnvis.typ``. The PDF ends with a section "Where the code is":
the ``helpers`` modules the notebook calls (see `helpers_used`), one line each, and where the submission's ZIP
holds them; their source is not printed (the asked-for implementations are shown in the notebook itself).

Figures are printed at a resolution that suits paper (see `print_image`): each is downsampled to at most 200
pixels per inch at the width it is printed and kept as PNG, or, where JPEG (150 ppi, quality 85) takes at most
half the PNG's bytes (photographs, optimized images, noise), stored as JPEG. Code lines longer than the page are
broken at token boundaries (see `wrap_code`). Only Typst's built-in fonts are used, so the PDF is the same on
every machine; it is a PDF/A-2b, for which Typst checks that every character has a glyph (see `compile_typst`).
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
# Characters of a code line that fit the width of a code cell's frame at cnnvis.typ's code-size (8 pt DejaVu Sans
# Mono, 0.602 em per character: 469.9 pt / 4.816 pt = 97.5): longer lines are broken by `wrap_code`.
CODE_COLUMNS = 96
INSTALL = "install the export's packages: .venv/bin/pip install -r requirements.txt"


class PdfError(Exception):
    """The conversion failed; the message says why in one line."""


@dataclass
class Figure:
    """One figure as printed: its file, format (``"png"``/``"jpeg"``), pixel size and bytes before and after."""

    name: str
    format: str
    size_before: tuple[int, int]
    size_after: tuple[int, int]
    bytes_before: int
    bytes_after: int


@dataclass
class Conversion:
    """What `notebook_pdf` did: the helpers modules listed in "Where the code is", the figures, whether the PDF
    is a PDF/A-2b, the characters drawn as boxes (no font has them), seconds per stage."""

    called: list[str] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
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


# ---- code lines longer than the page: broken at token boundaries, never inside a string that fits a line ----

OPENING, CLOSING = "([{", ")]}"
GLUED_BEFORE = set(CLOSING) | {",", ":", ".", "(", "[", ";", "=", "->"}  # no break before these tokens
GLUED_AFTER = {".", "=", "->", "**", "*", "@", "~", "lambda"}  # ... nor after these (attribute, keyword, unpack)
OPERATORS = {"+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", ">", "<=", ">=", "|", "&", "^", "and", "or",
             "if", "else", "for", "in", "not", "is"}


def code_breaks(source: str) -> dict[int, dict[int, int]] | None:
    """Where each line of ``source`` may be broken: ``{line index: {column: priority}}``, or None when the
    source does not tokenize (the caller then breaks at spaces).

    Priority 3: after a comma or an opening bracket inside brackets (the broken line is still valid Python);
    2: before or after an operator inside brackets, or at a space inside a comment; 1: between two tokens
    with a space between them elsewhere; 0: at a space inside a string (only where the string is longer than
    a line). A break is never placed between a name and its ``(``/``[``/``.``, nor around ``=``.
    """
    import io
    import tokenize

    fstring_start = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+ splits f-strings into tokens
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    skipped = {tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    breaks: dict[int, dict[int, int]] = {}
    depth = fdepth = 0
    prev = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in skipped:
                prev = None if tok.type in (tokenize.NEWLINE, tokenize.NL) else prev
                continue
            (row, col), (end_row, _) = tok.start, tok.end
            line = breaks.setdefault(row - 1, {})
            if fdepth == 0 and prev is not None and prev.end[0] == row:
                spaced = col > prev.end[1]
                if prev.string == "," or prev.string in OPENING:
                    priority = 3 if depth > 0 else 1
                elif tok.string in GLUED_BEFORE or prev.string in GLUED_AFTER:
                    priority = None
                elif spaced and (tok.string in OPERATORS or prev.string in OPERATORS):
                    priority = 2 if depth > 0 else 1
                else:
                    priority = 1 if spaced else None
                if priority is not None:
                    line[col] = priority
            if tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and row == end_row):
                for match in re.finditer(" +", tok.string):
                    line.setdefault(col + match.end(), 2 if tok.type == tokenize.COMMENT else 0)
            if tok.type == fstring_start:
                fdepth += 1
            elif tok.type == fstring_end:
                fdepth -= 1
            elif fdepth == 0 and tok.type == tokenize.OP:
                depth += (tok.string in OPENING) - (tok.string in CLOSING)
            prev = tok
    except (tokenize.TokenError, SyntaxError):
        return None
    return breaks


def wrap_line(line: str, breaks: dict[int, int] | None, columns: int) -> list[str]:
    """``line`` as lines of at most ``columns`` characters where breaks allow, continuation lines indented four
    more than the line (see `code_breaks`; ``None``: break at spaces)."""
    if len(line) <= columns:
        return [line]
    if breaks is None:
        breaks = {m.end(): 1 for m in re.finditer(" +", line)}
    indent = len(line) - len(line.lstrip(" "))
    hang = " " * (indent + 4 if indent + 4 < columns // 2 else indent)
    out, start, prefix = [], 0, ""
    while len(prefix) + len(line) - start > columns:
        limit = start + columns - len(prefix)  # the last column of `line` that fits on this output line
        lowest = start + (indent + 1 if not prefix else 1)
        options = {col: prio for col, prio in breaks.items() if lowest <= col <= limit}
        code = [col for col, prio in options.items() if prio >= 1]
        cut = None
        if code:
            far = [col for col in code if col >= start + 0.6 * (limit - start)]
            pool = far or code
            best = max(options[col] for col in pool)
            cut = max(col for col in pool if options[col] == best)
            rest_start = cut + len(line[cut:]) - len(line[cut:].lstrip(" "))
            next_limit = rest_start + columns - len(hang)
            fits = len(line) <= next_limit or any(
                rest_start < col <= next_limit and prio >= 1 for col, prio in breaks.items())
            strings = [col for col, prio in options.items() if prio == 0 and col > cut]
            if not fits and strings:  # the string after the break needs a break anyway: break it here
                cut = max(strings)
        elif options:
            cut = max(options)
        if cut is None:
            cut = limit  # nothing to break at: a hard break
        head = line[start:cut]
        out.append(prefix + (head if options.get(cut) == 0 else head.rstrip(" ")))
        start = cut if options.get(cut) == 0 else cut + len(line[cut:]) - len(line[cut:].lstrip(" "))
        prefix = hang
    out.append(prefix + line[start:])
    return out


def wrap_code(source: str, columns: int = CODE_COLUMNS) -> str:
    """Python ``source`` with every line longer than ``columns`` broken at the best token boundary (see
    `code_breaks`); Typst would break it at the last space, often inside a string literal."""
    lines = source.split("\n")
    if all(len(line) <= columns for line in lines):
        return source
    breaks = code_breaks(source)
    return "\n".join(part for i, line in enumerate(lines)
                     for part in wrap_line(line, None if breaks is None else breaks.get(i, {}), columns))


def wrap_markdown_code(markdown: str, columns: int = CODE_COLUMNS) -> str:
    """``markdown`` with the lines of its fenced Python blocks broken by `wrap_code` at ``columns``."""
    def wrapped(match: re.Match) -> str:
        return match.group(1) + wrap_code(match.group(2), columns) + match.group(3)
    return re.sub(r"(?ms)^(```+ *python[^\n]*\n)(.*?)(\n```+ *$)", wrapped, markdown)


# ---- figures at print resolution ----

# The text block of cnnvis.typ (A4, margins 2 cm x 2.2 cm) and figure-image's height cap (80% of it), in inches:
# a figure is printed at its natural size (pixels / its dpi), scaled down to fit both.
TEXT_WIDTH_IN = (210 - 2 * 20) / 25.4
FIGURE_HEIGHT_IN = 0.8 * (297 - 2 * 22) / 25.4
PNG_PPI = 200  # lossless figures (plots, diagrams): crisp lines and text in print
JPEG_PPI, JPEG_QUALITY = 150, 85  # photographic figures: a JPEG at 150 ppi looks the same on paper
JPEG_SHARE = 0.5  # JPEG only where it takes at most half the PNG's bytes
PLOT_BACKGROUND = 0.75  # a figure whose most common colour covers this share is a plot or diagram: PNG, never
                        # JPEG (no ringing around lines and labels); images and photo grids cover 0.2-0.65


def print_image(data: bytes) -> tuple[bytes, str, tuple[int, int]]:
    """A raster figure as the PDF should hold it: ``(bytes, "png" or "jpeg", (width, height))``.

    The figure is printed at its natural size (pixels over the dpi stored in the file, 72 without one) scaled
    down to the text width and to `FIGURE_HEIGHT_IN`, as cnnvis.typ's ``figure-image`` does. It is downsampled
    (Lanczos) to `PNG_PPI` at that printed width and, unless it is mostly one background colour (a plot, see
    `PLOT_BACKGROUND`), also encoded as a JPEG at `JPEG_PPI`; the JPEG is taken when it has at most `JPEG_SHARE`
    of the PNG's bytes. The dpi
    written into the file keeps the natural size, so the figure is printed as large as before. Transparency is
    flattened onto white (the page's colour). A file that cannot be read is returned as it is.
    """
    import io

    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        kind = (image.format or "").lower()
        dpi = float((image.info.get("dpi") or (72, 72))[0]) or 72.0
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
        elif image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
    except Exception:  # noqa: BLE001 - not an image Pillow reads: Typst gets the file as it is
        return data, "unknown", (0, 0)
    width, height = image.size
    printed = min(width / dpi, TEXT_WIDTH_IN, FIGURE_HEIGHT_IN * width / height)  # inches across

    def at(ppi: int) -> tuple[Image.Image, float]:
        target = max(1, round(printed * ppi))
        if target >= width:
            return image, dpi
        resized = image.resize((target, max(1, round(height * target / width))), Image.Resampling.LANCZOS)
        return resized, dpi * target / width

    def encode(img: Image.Image, fmt: str, img_dpi: float, **options) -> bytes:
        buffer = io.BytesIO()
        img.save(buffer, format=fmt, dpi=(img_dpi, img_dpi), **options)
        return buffer.getvalue()

    crisp, crisp_dpi = at(PNG_PPI)
    png = data if kind == "png" and crisp is image else None  # already at print resolution: the file as it is
    if background_share(crisp) < PLOT_BACKGROUND:
        photo, photo_dpi = at(JPEG_PPI)
        jpeg = data if kind == "jpeg" and photo is image else encode(photo, "JPEG", photo_dpi,
                                                                     quality=JPEG_QUALITY, optimize=True)
        # the PNG's size for the comparison at zlib's fastest level (a few % larger, several times faster)
        estimate = len(png) if png is not None else len(encode(crisp, "PNG", crisp_dpi, compress_level=1))
        if len(jpeg) <= JPEG_SHARE * estimate:
            return jpeg, "jpeg", photo.size
    if png is None:
        png = encode(crisp, "PNG", crisp_dpi, compress_level=6)
    return png, "png", crisp.size


def background_share(image) -> float:
    """The share of the pixels that have the image's most common colour."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.uint32).reshape(-1, 3)
    _, counts = np.unique((pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2], return_counts=True)
    return float(counts.max()) / len(pixels)


def printable(nb):
    """A copy of the notebook as the PDF shows it: widget cells (tag ``widget``) and widget outputs dropped."""
    import copy

    nb = copy.deepcopy(nb)
    nb.cells = [cell for cell in nb.cells if WIDGET_TAG not in cell.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if WIDGET_MIME not in out.get("data", {})]
    return nb


def notebook_markdown(nb, folder: Path, stem: str, figures: list[Figure] | None = None) -> str:
    """The notebook as pandoc Markdown; its figures are written to ``folder/<stem>_files/`` at print resolution
    (see `print_image`; each one is appended to ``figures``)."""
    from nbconvert import MarkdownExporter
    from nbconvert.filters import path2url
    from traitlets.config import Config

    config = Config()
    config.NbConvertBase.display_data_priority = DISPLAY_PRIORITY
    exporter = MarkdownExporter(config=config, template_file=str(STYLE / "notebook.md.j2"),
                                filters={"fenced": fenced, "wrap": wrap, "wrap_code": wrap_code,
                                         "wrap_markdown_code": wrap_markdown_code,
                                         # in an output box, 2 characters narrower than a code cell
                                         "wrap_output_markdown": lambda md: wrap_markdown_code(md, CODE_COLUMNS - 2)})
    body, resources = exporter.from_notebook_node(nb, resources={"metadata": {"name": stem},
                                                                 "output_files_dir": f"{stem}_files"})
    for name, data in resources.get("outputs", {}).items():
        if Path(name).suffix.lower() in (".png", ".jpg", ".jpeg"):
            before = _pixel_size(data)
            printed, fmt, size = print_image(data)
            if fmt == "jpeg" and Path(name).suffix.lower() == ".png":
                renamed = str(Path(name).with_suffix(".jpg"))
                body = body.replace(f"]({path2url(name)})", f"]({path2url(renamed)})")
                name = renamed
            if figures is not None:
                figures.append(Figure(name, fmt, before, size, len(data), len(printed)))
            data = printed
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return body


def _pixel_size(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    try:
        return Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001 - reported as (0, 0); print_image passes such a file on unchanged
        return (0, 0)


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


# ---- where the code is: which helpers modules the notebook calls ----

def module_name(path: Path, package: Path) -> str:
    """A module's name inside the package: ``helpers/toolbox/engine.py`` -> ``"toolbox.engine"``."""
    return ".".join(path.relative_to(package).with_suffix("").parts)


def module_file(module: str) -> str:
    """The file of a module inside the package: ``"toolbox.engine"`` -> ``"toolbox/engine.py"``."""
    return module.replace(".", "/") + ".py"


def helpers_exports(package: Path) -> dict[str, str]:
    """Public name -> module (``"saliency"``, ``"toolbox.occlusion"``), from the package's ``__init__.py``
    (``from .mod import name``)."""
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
    return names


def module_imports(path: Path, package: Path) -> set[str]:
    """The package modules a helpers module imports (``from .x import ...``, ``from ..x import ...``, also inside
    functions), by their names inside the package; a name that is not a module is left in (callers intersect)."""
    here = module_name(path, package).split(".")[:-1]  # the module's own subpackage, [] at the top
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)]  # level 1: this subpackage, 2: its parent, ...
            if node.module:
                found.add(".".join([*base, *node.module.split(".")]))
            else:  # from . import x
                found.update(".".join([*base, alias.name]) for alias in node.names)
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
        modules they need that the notebook does not call itself) sorted; a module of a subpackage by its path,
        e.g. ``["saliency.py", "toolbox/occlusion.py"], ["config.py"]``.
    """
    modules = {module_name(p, package) for p in package.rglob("*.py") if p.name != "__init__.py"}
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
                            use(".".join(parts[1:]))
                        if alias.asname or len(parts) == 1:
                            aliases.add(alias.asname or "helpers")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                if parts[0] != "helpers":
                    continue
                for alias in node.names:
                    if alias.name == "*":
                        star = True
                    use(".".join(parts[1:]) if len(parts) > 1 else exports.get(alias.name, alias.name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                use(exports.get(node.attr, node.attr))
            elif star and isinstance(node, ast.Name):
                use(exports.get(node.id))
    # the modules those import, transitively
    imported: set[str] = set()
    todo = list(called)
    while todo:
        for module in module_imports(package / module_file(todo.pop()), package) & modules:
            if module not in called and module not in imported:
                imported.add(module)
                todo.append(module)
    return [module_file(m) for m in called], [module_file(m) for m in sorted(imported)]

# ---- Typst ----

MISSING_GLYPH = re.compile(r'the text `"(.+?)"` could not be displayed with font')


def module_summary(path: Path) -> str:
    """The first paragraph of a module's docstring on one line ("" without one)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split())


def typst_string(text: str) -> str:
    """``text`` as a Typst string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def typst_text(text: str) -> str:
    """``text`` as Typst markup that shows it literally, with reST/Markdown code spans (``x``, `x`,
    :func:`x`) set as inline code."""
    out, last = [], 0
    for match in re.finditer(r"(?::\w+:)?`{1,2}([^`]+?)`{1,2}", text):
        if match.start() > last:
            out.append("#" + typst_string(text[last:match.start()]))
        out.append(f"#raw({typst_string(match.group(1))})")
        last = match.end()
    if last < len(text):
        out.append("#" + typst_string(text[last:]))
    return "".join(out)


def code_section(called: list[str], imported: list[str], package: Path = ROOT / "helpers",
                 zip_name: str | None = None, notebook_name: str | None = None) -> str:
    """Typst markup of the closing section "Where the code is": the helpers modules the notebook calls, one
    line each (the first paragraph of the module's docstring), the modules they import, and where they are."""
    if not called:
        return ""
    if zip_name:
        where = (f"The submission's ZIP #raw({typst_string(zip_name)}) holds them as files under "
                 "`helpers/`, with the whole package, "
                 + (f"the notebook #raw({typst_string(notebook_name)}) (with its text outputs; its figures are "
                    "in this PDF) " if notebook_name else "the notebook ")
                 + "and `requirements.txt` to run it again.")
    else:
        where = "They are in the project's `helpers/` folder."
    lines = ["", "= Where the code is", "",
             "#par(justify: false)[The notebook shows the code each task asks for. Everything else it runs comes "
             f"from these {len(called)} modules of the project's `helpers` package, in the order the notebook "
             f"first calls them. {where}]", ""]
    lines += [f"- `helpers/{m}`: {typst_text(module_summary(package / m))}" for m in called]
    if imported:
        lines += ["", "#par(justify: false)[They import in turn "
                  + ", ".join(f"`{m}`" for m in imported) + ".]"]
    return "\n".join(lines) + "\n"


def typst_main(body: str, closing: str = "") -> str:
    """The main Typst file: the style, the notebook's body, and the closing section (see `code_section`)."""
    lines = ['#import "cnnvis.typ": *',
             "#show: notebook.with(title: sys.inputs.title, name: sys.inputs.name,",
             "  matriculation: sys.inputs.matriculation, date: sys.inputs.date)", "", body, closing]
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
                 zip_name: str | None = None, notebook_name: str | None = None) -> Conversion:
    """Write the executed notebook ``nb`` as ``pdf``: title block, cells, outputs, figures at print resolution,
    and the closing section "Where the code is" (naming ``zip_name`` and ``notebook_name`` when given: the
    submission's ZIP and the notebook inside it). Raises PdfError."""
    import time

    report = Conversion()
    nb = printable(nb)
    with tempfile.TemporaryDirectory(prefix="cnnvis-pdf-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        markdown = notebook_markdown(nb, folder, "notebook", report.figures)
        report.seconds["nbconvert"] = time.perf_counter() - start
        start = time.perf_counter()
        body = markdown_to_typst(markdown, folder)
        report.seconds["pandoc"] = time.perf_counter() - start
        report.called, report.imported = helpers_used(nb)
        shutil.copyfile(STYLE / "cnnvis.typ", folder / "cnnvis.typ")
        main = folder / "main.typ"
        closing = code_section(report.called, report.imported, zip_name=zip_name, notebook_name=notebook_name)
        main.write_text(typst_main(body, closing), encoding="utf-8")
        start = time.perf_counter()
        report.pdf_a, report.missing_glyphs = compile_typst(
            main, pdf, {"title": title, "name": name, "matriculation": matriculation, "date": date})
        report.seconds["typst"] = time.perf_counter() - start
    return report
