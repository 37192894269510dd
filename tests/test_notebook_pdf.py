"""The PDF route (nbconvert -> pandoc -> Typst) on notebooks with stored outputs: no kernel, seconds per test."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import notebook_pdf  # noqa: E402

pypdf = pytest.importorskip("pypdf")
pytest.importorskip("typst")

TITLE = dict(title="Exercise Sheet 4: Convolutional Neural Networks", name="Dvořák", matriculation="12345678",
             date="1 December 2026")
# Characters the notebooks print or are likely to: umlauts, Greek, arrows, maths, tqdm's bar blocks, box drawing.
EXPECTED_CHARACTERS = ("äöüÄÖÜß éèàçñ ÅåØøŁłřčšž αβγδεζηθικλμνξπρστυφχψω ΓΔΘΛΞΠΣΦΨΩ →←↑↓↔⇒ ×·±≈≠≤≥≪≫∞∑∏√∂∇∈ "
                       "‖ ⌊⌋⌈⌉ ⁻⁰¹²³ ₀₁₂₃ ° µ … – — ' ' \" \" ▏▎▍▌▋▊▉█ ░▒▓ │─┌┐└┘├┤ ✓✗")


def png_bytes(width: int = 320, height: int = 120) -> bytes:
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    pixels = (np.linspace(0, 255, width * height * 3) % 256).astype("uint8").reshape(height, width, 3)
    Image.fromarray(pixels).save(buffer, format="PNG", dpi=(160, 160))
    return buffer.getvalue()


def notebook(*cells) -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.cells = list(cells)
    return nb


def code(source: str, *outputs, tags: list[str] | None = None) -> nbformat.NotebookNode:
    cell = v4.new_code_cell(source, outputs=list(outputs), execution_count=1)
    if tags:
        cell.metadata["tags"] = tags
    return cell


def display(mime: str, data: str) -> nbformat.NotebookNode:
    return v4.new_output("display_data", data={mime: data, "text/plain": "<object>"})


def stdout(text: str) -> nbformat.NotebookNode:
    return v4.new_output("stream", name="stdout", text=text)


def pdf_of(tmp_path: Path, nb, **options) -> tuple[pypdf.PdfReader, notebook_pdf.Conversion]:
    pdf = tmp_path / "out.pdf"
    result = notebook_pdf.notebook_pdf(nb, pdf, **{**TITLE, **options})
    return pypdf.PdfReader(pdf), result


def text_of(reader) -> str:
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())


def coloured_text_operations(reader) -> int:
    """How many times the pages set a fill colour that is not a grey: syntax highlighting's colours."""
    from pypdf.generic import ContentStream

    count = 0
    for page in reader.pages:
        for operands, operator in ContentStream(page.get_contents(), reader).operations:
            if operator in (b"rg", b"sc", b"scn") and len({round(float(v), 3) for v in operands}) > 1:
                count += 1
    return count


def test_fenced_code_is_longer_than_any_backtick_run_inside():
    assert notebook_pdf.fenced("x = 1", "python") == "```python\nx = 1\n```"
    assert notebook_pdf.fenced("a ```` b\n") == "`````\na ```` b\n`````"


def test_wrap_breaks_only_long_runs_without_spaces():
    assert notebook_pdf.wrap("short words stay " * 20) == "short words stay " * 20
    wrapped = notebook_pdf.wrap("x" * 200 + " tail", columns=90)
    assert wrapped == "x" * 90 + "\n" + "x" * 90 + "\n" + "x" * 20 + " tail"


def test_title_block_headings_math_table_figure_and_page_numbers(tmp_path):
    nb = notebook(
        v4.new_markdown_cell("# Task 1: convolutions\n\nThe sum $\\sum_i x_i$ and\n\n$$y = W x + b$$\n\n"
                             "| layer | receptive field |\n|---|---:|\n| conv1 | 3 |\n\n## 1.1 Padding"),
        code("print('hello')", stdout("hello from the output\n")),
        code("plot()", v4.new_output("display_data", data={"image/png": base64.b64encode(png_bytes()).decode(),
                                                          "text/plain": "<Figure size 640x480 with 1 Axes>"})),
    )
    reader, result = pdf_of(tmp_path, nb, appendix=False)
    text = text_of(reader)
    for expected in ("Exercise Sheet 4: Convolutional Neural Networks", "Dvořák", "Matriculation number: 12345678",
                     "1 December 2026", "Task 1: convolutions", "1.1 Padding", "receptive field", "conv1",
                     "print('hello')", "hello from the output", f"1 / {len(reader.pages)}"):
        assert expected in text, expected
    assert "<Figure size" not in text  # the figure, not its text fallback
    assert sum(len(page.images) for page in reader.pages) == 1
    assert "𝑥" in text and "𝑦 = 𝑊 𝑥 + 𝑏" in text  # maths set as maths (italic maths letters)
    assert "Appendix" not in text and result.called == []
    assert result.pdf_a and result.missing_glyphs == []
    assert reader.metadata.title == TITLE["title"] and reader.metadata.author == "Dvořák"


def test_python_in_markdown_output_is_highlighted_and_plain_output_is_not(tmp_path):
    source = "def total_variation(img):\n    return (img[1:] - img[:-1]).abs().sum()"
    as_markdown = notebook(code("H.show_source(f)", display("text/markdown", f"`f.py`:\n\n```python\n{source}\n```")))
    as_text = notebook(code("print(src)", stdout(source)))
    (tmp_path / "md").mkdir()
    (tmp_path / "txt").mkdir()
    highlighted, _ = pdf_of(tmp_path / "md", as_markdown, appendix=False)
    plain, _ = pdf_of(tmp_path / "txt", as_text, appendix=False)
    assert "def total_variation(img):" in text_of(highlighted) and "def total_variation(img):" in text_of(plain)
    # the code cell's own source is highlighted in both; the Markdown output's block adds more colour
    assert coloured_text_operations(highlighted) > coloured_text_operations(plain) > 0


def test_widget_cells_and_widget_outputs_are_dropped_and_errors_shown(tmp_path):
    widget_view = v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                                                      "text/plain": "HBox(children=(IntProgress(value=0),))"})
    nb = notebook(code("interact(f)", stdout("slider output\n"), tags=["widget"]),
                  code("loop()", widget_view, stdout("done\n")),
                  code("1 / 0", v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                              traceback=["\x1b[31mZeroDivisionError\x1b[0m: division by zero"])))
    reader, _ = pdf_of(tmp_path, nb, appendix=False)
    text = text_of(reader)
    assert "interact(f)" not in text and "slider output" not in text and "HBox" not in text
    assert "done" in text and "ZeroDivisionError: division by zero" in text and "[31m" not in text


def test_every_character_of_the_sheet_notebooks_has_a_glyph(tmp_path):
    characters = set(EXPECTED_CHARACTERS)
    for name in ("sheet4.ipynb", "sheet5.ipynb"):
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        for cell in nb.cells:
            characters |= set(cell.source)
            for out in cell.get("outputs", []):
                characters |= set(out.get("text", "")) | set("".join(str(v) for k, v in out.get("data", {}).items()
                                                                   if k.startswith("text/")))
    line = "".join(sorted(c for c in characters if c.isprintable() and c not in "`$*_\\#<>[]|~"))
    # in prose, bold and italic prose, a heading, a code cell, and a text output (each font a different face)
    nb = notebook(v4.new_markdown_cell(f"## {line}\n\n{line}\n\n**{line}**\n\n*{line}*"),
                  code(line, stdout(line)))
    _, result = pdf_of(tmp_path, nb, appendix=False)
    assert result.missing_glyphs == [] and result.pdf_a


def test_a_character_no_font_has_is_reported_and_the_pdf_still_written(tmp_path):
    nb = notebook(v4.new_markdown_cell("A CJK character: 漢, and Greek: α"))
    reader, result = pdf_of(tmp_path, nb, appendix=False)
    assert result.missing_glyphs == ["漢"] and not result.pdf_a
    assert "Greek" in text_of(reader)


def test_appendix_has_the_called_helpers_modules_with_their_source(tmp_path):
    nb = notebook(code("%matplotlib inline\nimport helpers as H"),
                  code("r = H.total_variation(x)\nH.show_source(H.total_variation)"))
    reader, result = pdf_of(tmp_path, nb)
    assert result.called == ["regularizers.py", "source.py"]
    assert set(result.imported) >= {"config.py"} and not set(result.imported) & set(result.called)
    text = text_of(reader)
    assert "Appendix" in text
    for module in result.called + result.imported:
        assert f"helpers/{module}" in text
    first_line = (ROOT / "helpers" / "regularizers.py").read_text().splitlines()[0]
    assert " ".join(first_line.split()) in text


def write_package(folder: Path, modules: dict[str, str]) -> Path:
    folder.mkdir()
    for name, source in modules.items():
        (folder / f"{name}.py").write_text(source)
    return folder


def test_helpers_used_follows_aliases_imports_and_module_imports(tmp_path):
    package = write_package(tmp_path / "helpers", {
        "__init__": "from .a import alpha\nfrom .b import beta as renamed\nfrom .c import gamma\n"
                    "from .d import delta\n",
        "a": "from .e import eps\n",
        "b": "def beta():\n    from .f import phi\n",
        "c": "",
        "d": "",
        "e": "from . import g\n",
        "f": "",
        "g": "",
        "unused": "",
    })
    nb = notebook(
        v4.new_markdown_cell("`H.delta` in prose is not a call"),
        code("%matplotlib inline\nimport helpers as H"),
        code("H.renamed()\nH.alpha()"),  # the alias from an earlier cell
        code("from helpers import gamma\nfrom helpers.d import something"),
        code("H.no_such_name\nother.alpha()"),
        code("this is not python"),
    )
    called, imported = notebook_pdf.helpers_used(nb, package)
    assert called == ["b.py", "a.py", "c.py", "d.py"]
    assert imported == ["e.py", "f.py", "g.py"]


def test_helpers_used_finds_star_imports(tmp_path):
    package = write_package(tmp_path / "helpers", {"__init__": "from .a import alpha\nfrom .b import beta\n",
                                                   "a": "", "b": ""})
    called, _ = notebook_pdf.helpers_used(notebook(code("from helpers import *\nbeta(1)")), package)
    assert called == ["b.py"]


def test_images_typst_cannot_load_become_a_note(tmp_path):
    nb = notebook(v4.new_markdown_cell("A photo: ![pug](../data/pug.jpg)\n\n![](https://example.org/figure.png)"))
    reader, _ = pdf_of(tmp_path, nb, appendix=False)
    text = text_of(reader)
    assert "[image not included: ../data/pug.jpg]" in text
    assert "[image not included: https://example.org/figure.png]" in text
