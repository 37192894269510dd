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


def noise_png(width: int = 2771, height: int = 1298, dpi: int = 160) -> bytes:
    """An optimized image of a random network looks like this: incompressible colour noise (about 10 MB)."""
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


def plot_png() -> bytes:
    """A matplotlib line plot as the export's kernel draws it (160 dpi), wider than the page."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4))
    x = np.linspace(0, 10, 200)
    ax.plot(x, np.sin(x), label="train")
    ax.plot(x, np.cos(x), "--", label="test")
    ax.set(title="accuracy per epoch", xlabel="epoch", ylabel="accuracy (%)")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=160)
    plt.close(fig)
    return buffer.getvalue()


def figure_output(png: bytes) -> nbformat.NotebookNode:
    return v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode(),
                                               "text/plain": "<Figure size 640x480 with 1 Axes>"})


def pdf_images(reader) -> list[tuple[str, int, int, int]]:
    """The PDF's image objects: (filter, width, height, bytes of the stored stream)."""
    found = {}
    for page in reader.pages:
        for ref in page.get("/Resources", {}).get("/XObject", {}).values():
            image = ref.get_object()
            if image.get("/Subtype") == "/Image":
                found[ref.idnum] = (str(image.get("/Filter")), int(image["/Width"]), int(image["/Height"]),
                                    len(image._data))
    return list(found.values())


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
    reader, result = pdf_of(tmp_path, nb)
    text = text_of(reader)
    for expected in ("Exercise Sheet 4: Convolutional Neural Networks", "Dvořák", "Matriculation number: 12345678",
                     "1 December 2026", "Task 1: convolutions", "1.1 Padding", "receptive field", "conv1",
                     "print('hello')", "hello from the output", f"1 / {len(reader.pages)}"):
        assert expected in text, expected
    assert "<Figure size" not in text  # the figure, not its text fallback
    assert sum(len(page.images) for page in reader.pages) == 1
    assert "𝑥" in text and "𝑦 = 𝑊 𝑥 + 𝑏" in text  # maths set as maths (italic maths letters)
    assert "Where the code is" not in text and result.called == []  # no helpers called: no closing section
    assert result.pdf_a and result.missing_glyphs == []
    assert reader.metadata.title == TITLE["title"] and reader.metadata.author == "Dvořák"


def test_headings_with_inline_code_show_no_backticks(tmp_path):
    nb = notebook(v4.new_markdown_cell("## 2.3 DeepDream with `tv_weight` on `features.27`\n\nText."),
                  code("x", display("text/markdown", "### The `H.render` loop\n\nMore text.")))
    reader, _ = pdf_of(tmp_path, nb)
    text = text_of(reader)
    assert "2.3 DeepDream with tv_weight on features.27" in text and "The H.render loop" in text
    assert "`" not in text
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    assert outline[0] == "2.3 DeepDream with tv_weight on features.27"


def test_python_in_markdown_output_is_highlighted_and_plain_output_is_not(tmp_path):
    source = "def total_variation(img):\n    return (img[1:] - img[:-1]).abs().sum()"
    as_markdown = notebook(code("H.show_source(f)", display("text/markdown", f"`f.py`:\n\n```python\n{source}\n```")))
    as_text = notebook(code("print(src)", stdout(source)))
    (tmp_path / "md").mkdir()
    (tmp_path / "txt").mkdir()
    highlighted, _ = pdf_of(tmp_path / "md", as_markdown)
    plain, _ = pdf_of(tmp_path / "txt", as_text)
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
    reader, _ = pdf_of(tmp_path, nb)
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
    _, result = pdf_of(tmp_path, nb)
    assert result.missing_glyphs == [] and result.pdf_a


def test_a_character_no_font_has_is_reported_and_the_pdf_still_written(tmp_path):
    nb = notebook(v4.new_markdown_cell("A CJK character: 漢, and Greek: α"))
    reader, result = pdf_of(tmp_path, nb)
    assert result.missing_glyphs == ["漢"] and not result.pdf_a
    assert "Greek" in text_of(reader)


def test_where_the_code_is_lists_the_called_modules_with_their_summary_and_no_source(tmp_path):
    nb = notebook(code("%matplotlib inline\nimport helpers as H"),
                  code("r = H.total_variation(x)\nH.show_source(H.total_variation)"))
    reader, result = pdf_of(tmp_path, nb, zip_name="Dvorak-12345678.zip", notebook_name="sheet4.ipynb")
    assert result.called == ["regularizers.py", "source.py"]
    assert set(result.imported) >= {"config.py"} and not set(result.imported) & set(result.called)
    text = text_of(reader)
    section = text[text.index("Where the code is"):]
    assert "Dvorak-12345678.zip" in section and "sheet4.ipynb" in section and "requirements.txt" in section
    for module in result.called:
        summary = notebook_pdf.module_summary(ROOT / "helpers" / module)
        assert f"helpers/{module}" in section and summary.replace("``", "") in section
    assert all(module in section for module in result.imported)
    body = (ROOT / "helpers" / "regularizers.py").read_text()
    assert "def total_variation" in body and "def total_variation" not in text  # no source printed
    assert "Appendix" not in text


def test_typst_text_shows_docstring_markup_literally(tmp_path):
    import typst

    docstring = 'A "quoted" #hash, $x$, *stars*, <tag> @ref and a \\ with :func:`frozen_eval` and ``x[0]``.'
    (tmp_path / "main.typ").write_text(notebook_pdf.typst_text(docstring), encoding="utf-8")
    typst.compile(str(tmp_path / "main.typ"), output=str(tmp_path / "out.pdf"))
    assert text_of(pypdf.PdfReader(tmp_path / "out.pdf")) == (
        'A "quoted" #hash, $x$, *stars*, <tag> @ref and a \\ with frozen_eval and x[0].')


# ---- figures at print resolution ----

def test_an_optimized_noise_image_is_printed_as_a_small_jpeg(tmp_path):
    png = noise_png()
    assert len(png) > 6_000_000  # as the notebook stores it
    reader, result = pdf_of(tmp_path, notebook(code("show(image)", figure_output(png))))
    [(kind, width, height, size)] = pdf_images(reader)
    assert kind == "/DCTDecode" and result.figures[0].format == "jpeg"
    across = notebook_pdf.TEXT_WIDTH_IN  # as wide as the text: 150 ppi there
    assert abs(width - across * notebook_pdf.JPEG_PPI) <= 1 and abs(width / height - 2771 / 1298) < 0.01
    assert size <= 300_000 and (tmp_path / "out.pdf").stat().st_size <= 400_000


def test_a_line_plot_stays_png_at_200_ppi(tmp_path):
    reader, result = pdf_of(tmp_path, notebook(code("plt.plot(x)", figure_output(plot_png()))))
    [(kind, width, height, size)] = pdf_images(reader)
    assert kind == "/FlateDecode" and result.figures[0].format == "png"
    assert abs(width - notebook_pdf.TEXT_WIDTH_IN * notebook_pdf.PNG_PPI) <= 1 and size <= 200_000


def test_a_figure_keeps_its_printed_size_and_a_small_one_its_file():
    from PIL import Image

    for png in (noise_png(1800, 600), plot_png()):
        before = Image.open(io.BytesIO(png))
        printed, _, size = notebook_pdf.print_image(png)
        after = Image.open(io.BytesIO(printed))
        assert after.size == size and size[0] < before.size[0]
        inches = before.size[0] / before.info["dpi"][0]
        assert abs(after.size[0] / after.info["dpi"][0] - inches) / inches < 0.015  # dpi is stored rounded
    small = png_bytes(320, 120)  # 2 inches at 160 dpi: already below 200 ppi, a smooth gradient
    assert notebook_pdf.print_image(small)[0] == small


# ---- tables ----

def test_a_long_table_repeats_its_header_on_each_page_and_short_tables_stay_whole(tmp_path):
    header = "| layer | receptive field | note |\n|---|---:|---|\n"
    long_table = header + "\n".join(f"| features.{i} | {3 * i} | row{i} of the long table |" for i in range(90))
    # twelve short tables, one after another: a breakable one would be split at a page end
    shorts = [header + "\n".join(f"| features.27 | {j} | t{i}r{j} |" for j in range(6)) for i in range(12)]
    nb = notebook(code("H.table(rows)", display("text/markdown", long_table)),
                  *[code(f"H.table({i})", display("text/markdown", table)) for i, table in enumerate(shorts)])
    reader, _ = pdf_of(tmp_path, nb)
    pages = [" ".join(page.extract_text().split()) for page in reader.pages]
    with_rows = [page for page in pages if "row" in page and "of the long table" in page]
    assert len(with_rows) >= 2
    for page in with_rows:  # the header row comes first on every page the table continues on
        assert page.index("layer receptive field note") < page.index("of the long table")
    for i in range(12):
        holding = {n for n, page in enumerate(pages) for j in range(6) if f"t{i}r{j}" in page}
        assert len(holding) == 1, (i, holding)
    assert "fea- tures" not in " ".join(pages) and "fea-tures" not in " ".join(pages)  # never hyphenated


def test_a_short_printed_table_stays_on_one_page_and_a_long_output_breaks(tmp_path):
    printed = [code(f"print(table{i})", stdout("".join(f"layer {j}   t{i}r{j}   {j * 3:4d}\n" for j in range(12))))
               for i in range(10)]
    long_output = code("print(log)", stdout("".join(f"epoch {j}: loss 0.{j:03d}\n" for j in range(120))))
    reader, _ = pdf_of(tmp_path, notebook(*printed, long_output))
    pages = [" ".join(page.extract_text().split()) for page in reader.pages]
    for i in range(10):
        holding = {n for n, page in enumerate(pages) for j in range(12) if f"t{i}r{j} " in page}
        assert len(holding) == 1, (i, holding)
    assert len({n for n, page in enumerate(pages) if "epoch " in page}) >= 2  # 120 lines: broken across pages


def test_words_in_narrow_table_cells_are_not_hyphenated(tmp_path):
    # sheet 5's table of dreams: the layer combination is longer than its column and was set "fea-tures.27"
    row = "| features.11+features.20+features.27 | 0.583 → 0.707 (1.21×) | 0.0360 | 0.0718 |"
    wide = ("| dream | objective: photo → dream | mean change of the pixels | TV per pixel |\n|---|---|---|---|\n"
            + "\n".join([row] * 12) + "\n")
    reader, _ = pdf_of(tmp_path, notebook(code("H.table(rows)", display("text/markdown", wide))))
    lines = [line for page in reader.pages for line in page.extract_text().splitlines()]
    assert not any(line.rstrip().endswith("-") for line in lines), [line for line in lines if line.endswith("-")]
    assert any("features.27" in line for line in lines)


# ---- code lines longer than the page ----

LONG_CALL = ('result = some_function(argument_one, "a string that must stay on one line", keyword=value_three, '
             'another_keyword=value_four, last=5)')
LONG_STRING = ('print("the saliency map is here:", value, "and a string of sixty characters that fits one line")')


def test_long_code_lines_break_after_a_comma_inside_brackets_and_stay_the_same_python():
    import ast

    for source in (LONG_CALL, LONG_STRING, f"if True:\n    {LONG_CALL}  # and a comment at the end of it"):
        wrapped = notebook_pdf.wrap_code(source, columns=80)
        lines = wrapped.splitlines()
        assert len(lines) > len(source.splitlines()) and max(map(len, lines)) <= 80, wrapped
        assert ast.dump(ast.parse(wrapped)) == ast.dump(ast.parse(source))  # broken inside brackets only
    # each string literal stays whole: it fits a line, so the break goes before it, not into it
    assert notebook_pdf.wrap_code(LONG_STRING, columns=80).splitlines()[1].strip() == (
        '"and a string of sixty characters that fits one line")')
    assert '"a string that must stay on one line"' in notebook_pdf.wrap_code(LONG_CALL, columns=60)


def test_a_string_longer_than_a_line_breaks_at_a_space_and_short_lines_are_untouched():
    source = 'raise ValueError(f"{start!r} is not in the source of {name}; pass a text that occurs in its lines")'
    lines = notebook_pdf.wrap_code(source, columns=60).splitlines()
    assert max(map(len, lines)) <= 60 and "".join(line.strip() + " " for line in lines).split() == source.split()
    short = "x = 1\ny = f(a, b)  # fits\n"
    assert notebook_pdf.wrap_code(short, columns=60) == short
    magic = "%matplotlib inline\n!pip install " + " ".join(["package"] * 20)  # not Python: broken at spaces
    assert max(map(len, notebook_pdf.wrap_code(magic, columns=60).splitlines())) <= 60


def test_code_in_the_pdf_is_broken_at_commas_not_inside_strings(tmp_path):
    cell = ('print(f"the running value over the last epoch, {value:.1%}, is above the test accuracy", '
            'f"and the gap is {gap:+.1f} points")')
    shown = f"`f.py`:\n\n```python\n{LONG_CALL}\n```"
    reader, _ = pdf_of(tmp_path, notebook(code(cell, display("text/markdown", shown))))
    lines = [line.strip() for page in reader.pages for line in page.extract_text().splitlines()]
    assert 'print(f"the running value over the last epoch, {value:.1%}, is above the test accuracy",' in lines
    assert 'f"and the gap is {gap:+.1f} points")' in lines
    assert any(line.startswith("result = some_function(argument_one,") and line.endswith(",") for line in lines)


def write_package(folder: Path, modules: dict[str, str]) -> Path:
    folder.mkdir()
    for name, source in modules.items():
        (folder / f"{name}.py").parent.mkdir(exist_ok=True)
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


def test_helpers_used_follows_subpackages_by_their_paths(tmp_path):
    package = write_package(tmp_path / "helpers", {
        "__init__": "from .a import alpha\nfrom .box.b import beta\n",
        "a": "", "c": "", "unused": "",
        "box/__init__": "",
        "box/b": "from ..c import gamma\nfrom .d import delta\nfrom .. import a\n",
        "box/d": "", "box/e": "",
    })
    nb = notebook(code("import helpers as H\nH.beta()"), code("import helpers.box.e\nfrom helpers.box.d import delta"))
    called, imported = notebook_pdf.helpers_used(nb, package)
    assert called == ["box/b.py", "box/e.py", "box/d.py"]
    assert imported == ["a.py", "c.py"]


def test_helpers_used_finds_star_imports(tmp_path):
    package = write_package(tmp_path / "helpers", {"__init__": "from .a import alpha\nfrom .b import beta\n",
                                                   "a": "", "b": ""})
    called, _ = notebook_pdf.helpers_used(notebook(code("from helpers import *\nbeta(1)")), package)
    assert called == ["b.py"]


def test_images_typst_cannot_load_become_a_note(tmp_path):
    nb = notebook(v4.new_markdown_cell("A photo: ![pug](../data/pug.jpg)\n\n![](https://example.org/figure.png)"))
    reader, _ = pdf_of(tmp_path, nb)
    text = text_of(reader)
    assert "[image not included: ../data/pug.jpg]" in text
    assert "[image not included: https://example.org/figure.png]" in text
