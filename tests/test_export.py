"""The submission export: bad input and faults write nothing; a quick export gives exactly the expected ZIPs."""

from __future__ import annotations

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

NEEDS_TEX = pytest.mark.skipif(
    not (shutil.which("xelatex") and shutil.which("pandoc")) and not os.environ.get("CI"),
    reason="xelatex/pandoc not installed (CI installs them; see README)")


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
])
def test_surname_in_file_names(surname, expected):
    assert export.file_name_surname(surname) == expected


@pytest.mark.parametrize(("args", "message"), [
    (["--matriculation", "12345678"], "surname is empty"),
    (["--surname", "", "--matriculation", "12345678"], "surname is empty"),
    (["--surname", "Doe"], "matriculation number is empty"),
    (["--surname", "../x", "--matriculation", "12345678"], "not a name"),
    (["--surname", "a/b", "--matriculation", "12345678"], "not a name"),
    (["--surname", "$(rm -rf ~)", "--matriculation", "12345678"], "not a name"),
    (["--surname", "Doe\x07", "--matriculation", "12345678"], "not a name"),
    (["--surname", "..", "--matriculation", "12345678"], "not a name"),
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


def test_names_may_come_from_the_environment(tmp_path):
    result = subprocess.run([sys.executable, str(EXPORT), "--check"], capture_output=True, text=True,
                            env={**os.environ, "CNNVIS_SURNAME": "Doe", "CNNVIS_MATRICULATION": "12345678"})
    assert result.returncode == 0, result.stderr


def test_missing_tex_stops_before_running_with_the_install_command(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"PATH": str(bin_dir)}  # neither xelatex, pandoc nor chromium
    result = subprocess.run([sys.executable, str(EXPORT), "--surname", "Doe", "--matriculation", "12345678",
                             "--out-dir", str(tmp_path / "out"), "--build-dir", str(tmp_path / "build")],
                            capture_output=True, text=True, env={**os.environ, **env})
    assert result.returncode == 2
    assert "apt-get install texlive-xetex" in result.stderr and "brew" in result.stderr
    assert files_under(tmp_path / "out") == [] and files_under(tmp_path / "build") == []


@NEEDS_TEX
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


@NEEDS_TEX
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
    if not (shutil.which("xelatex") and shutil.which("pandoc")) and not shutil.which("chromium"):
        pytest.skip("no PDF route installed")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "build").rglob("*.log")) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the notebook runs
    time.sleep(2)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "nothing of it was written" in err
    assert files_under(tmp_path / "out") == [] and files_under(tmp_path / "build") == []
@NEEDS_TEX
def test_quick_export_of_both_sheets(tmp_path):
    result = run("--surname", "Müller", "--matriculation", "12345678", "--quick", tmp_path=tmp_path,
                 env={"CNNVIS_OFFLINE": "1"}, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    for sheet in ("4", "5"):
        zip_path = tmp_path / "out" / f"sheet{sheet}" / "Mueller-12345678.zip"
        helper_files = sorted(f"helpers/{p.name}" for p in (ROOT / "helpers").glob("*.py"))
        with zipfile.ZipFile(zip_path) as zf:
            assert sorted(zf.namelist()) == sorted([f"Mueller-12345678-sheet{sheet}.pdf", f"sheet{sheet}.ipynb",
                                                    "requirements.txt", *helper_files])
            executed = json.loads(zf.read(f"sheet{sheet}.ipynb"))
            pdf = tmp_path / f"sheet{sheet}.pdf"
            pdf.write_bytes(zf.read(f"Mueller-12345678-sheet{sheet}.pdf"))
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        flat = " ".join(text.split())
        assert f"Exercise Sheet {sheet}" in flat and "Müller (matriculation no. 12345678)" in flat
        headings = [line.lstrip("#").strip() for cell in executed["cells"] if cell["cell_type"] == "markdown"
                    for line in "".join(cell["source"]).splitlines() if line.startswith("## ")]
        assert len(headings) >= 3
        for heading in headings:
            assert " ".join(heading.replace("`", "").replace("*", "").split()) in flat, heading
        figures = sum(any(k.startswith("image/") for k in out.get("data", {})) for cell in executed["cells"]
                      if "widget" not in cell.get("metadata", {}).get("tags", []) for out in cell.get("outputs", []))
        listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
        images = sum(1 for line in listing.splitlines()[2:] if line.split()[2] == "image")
        assert figures >= 3 and images >= figures, (figures, images)
        assert "0%|" not in text  # no frozen progress bars
    # the gallery is an extra document: a PDF and the executed notebook, no ZIP
    gallery = tmp_path / "build" / "gallery"
    assert sorted(p.name for p in gallery.iterdir()) == ["Mueller-12345678-gallery.pdf", "gallery.ipynb"]
    text = subprocess.run(["pdftotext", str(gallery / "Mueller-12345678-gallery.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "Gallery" in text and "guided backprop" in " ".join(text.split()).lower()
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files_under(tmp_path / "out")) == [
        "sheet4/Mueller-12345678.zip", "sheet5/Mueller-12345678.zip"]
