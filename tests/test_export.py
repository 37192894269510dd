"""The submission export: bad input and faults write nothing; a quick export gives exactly the expected ZIPs.

The export needs no system tool: pandoc and Typst come from pip. The end-to-end tests run it with a PATH that
holds neither xelatex nor pandoc (the `no_tools` fixture) and read the PDFs with pypdf.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPORT = ROOT / "scripts" / "export.py"
sys.path.insert(0, str(ROOT / "scripts"))
import export  # noqa: E402


@pytest.fixture
def no_tools(tmp_path) -> dict:
    """An environment whose PATH is an empty folder: no xelatex, no system pandoc, no Chromium."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    assert shutil.which("pandoc", path=str(empty)) is None and shutil.which("xelatex", path=str(empty)) is None
    return {"PATH": str(empty)}


def package_files() -> list[str]:
    """The ZIP names of the helpers package's files, subpackages included (``helpers/toolbox/engine.py``), and of
    its tests (``tests/test_saliency.py``: the notebooks cite them)."""
    return sorted([f"helpers/{p.relative_to(ROOT / 'helpers').as_posix()}" for p in (ROOT / "helpers").rglob("*.py")]
                  + [f"tests/{p.name}" for p in (ROOT / "tests").glob("*.py")])


def run(*args: str, tmp_path: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, str(EXPORT), *args, "--build-dir", str(tmp_path / "build"),
               "--out-dir", str(tmp_path / "out")]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=tmp_path)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def write_notebook(folder: Path, *sources: str, name: str = "sheet4.ipynb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Test")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / name)
    return folder


@pytest.mark.parametrize(("surname", "expected"), [
    ("Mustermann", "Mustermann"), ("Müller", "Mueller"), ("Łukasz", "Lukasz"), ("Dvořák", "Dvorak"),
    ("Straße", "Strasse"), ("Smith-Jones", "Smith-Jones"), ("De la Cruz", "DelaCruz"), ("O'Brien", "OBrien"),
    # other scripts are transliterated (anyascii), never dropped: a Cyrillic И, a Chinese 李, a Cyrillic о
    # inside a Latin name, a soft sign (an apostrophe in transliteration, removed like one)
    ("Иvanov", "Ivanov"), ("Иванов", "Ivanov"), ("Smith李", "SmithLi"), ("P\u043epov", "Popov"), ("Гоголь", "Gogol"),
    ("Ελληνικά", "Ellinika"), ("Nguyễn", "Nguyen"),
])
def test_surname_in_file_names(surname, expected):
    assert export.file_name_surname(surname) == expected


@pytest.mark.parametrize("surname", ["Doeː", "Ƅob", "Ь"])  # a length mark, a tone letter, only a soft sign
def test_a_letter_without_ascii_spelling_is_refused_not_dropped(surname):
    with pytest.raises(export.ExportError, match="spelled in Latin letters"):
        export.file_name_surname(surname)


@pytest.mark.parametrize(("args", "message"), [
    (["--matriculation", "12345678"], "surname is empty"),
    (["--surname", "", "--matriculation", "12345678"], "surname is empty"),
    (["--surname", "Doe"], "matriculation number is empty"),
    (["--surname", "../x", "--matriculation", "12345678"], "not a name"),
    (["--surname", "a/b", "--matriculation", "12345678"], "not a name"),
    (["--surname", "$(rm -rf ~)", "--matriculation", "12345678"], "not a name"),
    (["--surname", "Doe\x07", "--matriculation", "12345678"], "not a name"),
    (["--surname", "..", "--matriculation", "12345678"], "not a name"),
    (["--surname", "Doeː", "--matriculation", "12345678"], "has no ASCII spelling"),
    (["--surname", "Doe", "--matriculation", "12a45678"], "6 to 10 digits"),
    (["--surname", "Doe", "--matriculation", "12345"], "6 to 10 digits"),
    (["--surname", "Doe", "--matriculation", "12345678901"], "6 to 10 digits"),
    (["--surname", "Doe", "--matriculation", "１２３４５６７８"], "6 to 10 digits"),  # full-width digits
])
def test_bad_input_is_one_line_error_and_writes_nothing(tmp_path, args, message):
    result = run(*args, "--quick", tmp_path=tmp_path, env={"CNNVIS_SURNAME": "", "CNNVIS_MATRICULATION": ""})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:") and message in result.stderr
    assert files_under(tmp_path) == []


def test_the_check_before_the_venv_needs_no_transliteration_package(monkeypatch, capsys):
    # export_pdf.sh runs `--check` with the system's python3, before the venv (and anyascii) exists
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "anyascii", None)  # `import anyascii` raises ImportError
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "anyascii" else find_spec(name, *args))
    assert export.main(["--check", "--surname", "Иvanov", "--matriculation", "12345678"]) == 0
    assert export.main(["--check", "--surname", "a/b", "--matriculation", "12345678"]) == 2
    assert export.main(["--check", "--surname", "Doe", "--matriculation", "12"]) == 2
    assert capsys.readouterr().err.count("error:") == 2


def test_names_may_come_from_the_environment(tmp_path):
    result = subprocess.run([sys.executable, str(EXPORT), "--check"], capture_output=True, text=True,
                            env={**os.environ, "CNNVIS_SURNAME": "Doe", "CNNVIS_MATRICULATION": "12345678"})
    assert result.returncode == 0, result.stderr


def test_zip_holds_the_pdf_the_code_and_the_notebook_without_its_figures(tmp_path):
    import base64

    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    png = base64.b64encode(b"\x89PNG not really").decode()
    nb.cells = [nbformat.v4.new_code_cell("print(1); plot()", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="accuracy 41.2%\n"),
        nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure size 640x480>"},
                               metadata={"image/png": {"width": 600}}),
        nbformat.v4.new_output("display_data", data={"image/jpeg": png}),  # nothing left: dropped
        nbformat.v4.new_output("execute_result", data={"text/plain": "tensor([1, 2])"}, execution_count=1),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                                                     "text/plain": "HBox()"})])]
    executed, pdf = tmp_path / "sheet4.ipynb", tmp_path / "Doe-12345678-sheet4.pdf"
    nbformat.write(nb, executed)
    pdf.write_bytes(b"%PDF-1.7 stand-in")
    names = export.pack(tmp_path / "Doe-12345678.zip", pdf, executed)
    helper_files = package_files()
    assert sorted(names) == sorted([pdf.name, "sheet4.ipynb", "requirements.txt", "README.txt", *helper_files])
    with zipfile.ZipFile(tmp_path / "Doe-12345678.zip") as zf:
        assert sorted(zf.namelist()) == sorted(names)
        packed = nbformat.reads(zf.read("sheet4.ipynb").decode(), as_version=4)
        readme = zf.read("README.txt").decode()
        assert zf.read("helpers/saliency.py") == (ROOT / "helpers" / "saliency.py").read_bytes()
        assert zf.read("helpers/toolbox/engine.py") == (ROOT / "helpers" / "toolbox" / "engine.py").read_bytes()
        assert zf.read("requirements.txt") == (ROOT / "requirements.txt").read_bytes()
    nbformat.validate(packed)
    assert "widgets" not in packed.metadata
    outputs = packed.cells[0].outputs
    assert [out.output_type for out in outputs] == ["stream", "display_data", "execute_result", "display_data"]
    assert outputs[0].text == "accuracy 41.2%\n" and outputs[2].data == {"text/plain": "tensor([1, 2])"}
    assert outputs[1].data == {"text/plain": "<Figure size 640x480>"} and outputs[3].data == {"text/plain": "HBox()"}
    assert packed.cells[0].source == "print(1); plot()"
    assert "sheet4.ipynb" in readme and "pip install -r requirements.txt" in readme and pdf.name in readme


def test_failing_cell_is_reported_and_keeps_the_previous_zip(tmp_path):
    notebooks = write_notebook(tmp_path / "nb", "x = 1", "1 / 0", "print('never')")
    previous = tmp_path / "out" / "sheet4" / "Doe-12345678.zip"
    previous.parent.mkdir(parents=True)
    previous.write_bytes(b"an earlier good submission")
    result = run("--surname", "Doe", "--matriculation", "12345678", "--sheet", "4", "--notebooks-dir",
                 str(notebooks), tmp_path=tmp_path)
    assert result.returncode == 1
    assert "sheet4.ipynb: cell 3 raised ZeroDivisionError: division by zero" in result.stderr
    assert files_under(tmp_path / "out") == [previous] and previous.read_bytes() == b"an earlier good submission"
    assert files_under(tmp_path / "build") == []


def test_widget_cells_are_kept_but_not_run_headless(tmp_path):
    folder = write_notebook(tmp_path / "nb", "print('plain cell ran')", "raise RuntimeError('widget cell ran')")
    nb = nbformat.read(folder / "sheet4.ipynb", as_version=4)
    nb.cells[2].metadata["tags"] = ["widget"]
    nbformat.write(nb, folder / "sheet4.ipynb")
    result = run("--surname", "Doe", "--matriculation", "12345678", "--sheet", "4", "--notebooks-dir", str(folder),
                 tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    executed = nbformat.read(tmp_path / "build" / "sheet4" / "sheet4.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"] == "plain cell ran\n"
    widget = executed.cells[2]
    assert widget.cell_type == "code" and widget.outputs == [] and widget.metadata["tags"] == ["widget"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_partial_files(tmp_path, sig):
    notebooks = write_notebook(tmp_path / "nb", "import time\ntime.sleep(120)")
    command = [sys.executable, str(EXPORT), "--surname", "Doe", "--matriculation", "12345678", "--sheet", "4",
               "--notebooks-dir", str(notebooks), "--build-dir", str(tmp_path / "build"),
               "--out-dir", str(tmp_path / "out")]
    # Started as a terminal's foreground job is: SIGINT not ignored. A shell's background job (`./run_tests.sh &`)
    # ignores SIGINT and exec passes that on; a handled signal is reset to the default in the child instead.
    ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, ignored)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "build").rglob("*.log")) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the notebook runs
    time.sleep(2)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "nothing of it was written" in err
    assert files_under(tmp_path / "out") == [] and files_under(tmp_path / "build") == []
def pdf_text(path: Path) -> tuple[str, int]:
    """The PDF's text with whitespace runs as single spaces, and how many images its pages show."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
    return text, sum(len(page.images) for page in reader.pages)


def title_block(surname: str, matriculation: str) -> list[str]:
    today = datetime.date.today()
    return [surname, f"Matriculation number: {matriculation}", f"{today.day} {today:%B %Y}"]


def test_small_export_without_system_tools_ends_with_where_the_code_is(tmp_path, no_tools):
    cell = "import matplotlib.pyplot as plt\nimport helpers as H\nplt.plot([1, 2]); plt.show()\nH.pick(1, 2)"
    folder = write_notebook(tmp_path / "nb", "%matplotlib inline", cell)
    result = run("--surname", "Dvořák", "--matriculation", "1234567", "--sheet", "4", "--notebooks-dir", str(folder),
                 tmp_path=tmp_path, env=no_tools)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    text, images = pdf_text(tmp_path / "build" / "sheet4" / "Dvorak-1234567-sheet4.pdf")
    assert text.startswith(export.SHEETS["4"].title)
    assert all(part in text for part in title_block("Dvořák", "1234567"))
    assert "Test" in text and "H.pick(1, 2)" in text and images == 1
    section = text[text.index("Where the code is"):]
    assert "helpers/config.py" in section and "Dvorak-1234567.zip" in section and "sheet4.ipynb" in section
    assert "Appendix" not in text and "def pick" not in text  # the module is named, its source is in the ZIP


def test_quick_export_of_both_sheets(tmp_path, no_tools):
    result = run("--surname", "Müller", "--matriculation", "12345678", "--quick", tmp_path=tmp_path,
                 env={"CNNVIS_OFFLINE": "1", **no_tools}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stderr  # e.g. "no font of the PDF has ...": every character has a glyph
    for sheet in ("4", "5"):
        zip_path = tmp_path / "out" / f"sheet{sheet}" / "Mueller-12345678.zip"
        helper_files = package_files()
        with zipfile.ZipFile(zip_path) as zf:
            assert sorted(zf.namelist()) == sorted([f"Mueller-12345678-sheet{sheet}.pdf", f"sheet{sheet}.ipynb",
                                                    "requirements.txt", "README.txt", *helper_files])
            packed = json.loads(zf.read(f"sheet{sheet}.ipynb"))
            pdf = tmp_path / f"sheet{sheet}.pdf"
            pdf.write_bytes(zf.read(f"Mueller-12345678-sheet{sheet}.pdf"))
        executed = json.loads((tmp_path / "build" / f"sheet{sheet}" / f"sheet{sheet}.ipynb").read_bytes())
        # the ZIP's notebook: the executed code and its text outputs, no figures
        assert [c["source"] for c in packed["cells"]] == [c["source"] for c in executed["cells"]]
        assert not any(k.startswith("image/") for c in packed["cells"] for out in c.get("outputs", [])
                       for k in out.get("data", {}))
        assert any(out.get("output_type") == "stream" for c in packed["cells"] for out in c.get("outputs", []))
        # the limits of issue 25, also in a quick run (a full run has the same figures, some with more panels)
        assert pdf.stat().st_size <= 6_000_000 and zip_path.stat().st_size <= 10_000_000
        text, images = pdf_text(pdf)
        assert text.startswith(f"Exercise Sheet {sheet}")
        assert all(part in text for part in title_block("Müller", "12345678"))
        headings = [line.lstrip("#").strip() for cell in executed["cells"] if cell["cell_type"] == "markdown"
                    and "widget" not in cell.get("metadata", {}).get("tags", [])  # widget cells are dropped
                    for line in "".join(cell["source"]).splitlines() if line.startswith("## ")]
        assert len(headings) >= 3
        for heading in headings:
            assert " ".join(heading.replace("`", "").replace("*", "").split()) in text, heading
        figures = sum(any(k.startswith("image/") for k in out.get("data", {})) for cell in executed["cells"]
                      if "widget" not in cell.get("metadata", {}).get("tags", []) for out in cell.get("outputs", []))
        assert figures >= 3 and images == figures, (figures, images)
        assert "0%|" not in text  # no frozen progress bars
        # the closing section names the helpers modules the notebook calls and the ZIP
        section = text[text.rindex("Where the code is"):]
        called = {"4": "receptive.py", "5": "filtervis.py"}[sheet]  # receptive fields; the plain ascent loop
        assert f"helpers/{called}" in section and "Mueller-12345678.zip" in section and "Appendix" not in text
    # the gallery is an extra document: a PDF and the executed notebook, no ZIP
    gallery = tmp_path / "build" / "gallery"
    assert sorted(p.name for p in gallery.iterdir()) == ["Mueller-12345678-gallery.pdf", "gallery.ipynb"]
    text, _ = pdf_text(gallery / "Mueller-12345678-gallery.pdf")
    assert "Gallery" in text and "guided backprop" in text.lower()
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files_under(tmp_path / "out")) == [
        "sheet4/Mueller-12345678.zip", "sheet5/Mueller-12345678.zip"]
