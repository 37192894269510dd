"""Committed notebooks are sources: no images, no widget state; only nbval-checked cells keep text output."""

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def is_checked(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return "nbval-check-output" in tags or "# NBVAL_CHECK_OUTPUT" in [s.strip() for s in source.splitlines()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_is_clean(path):
    nb = json.loads(path.read_text())
    assert "widgets" not in nb.get("metadata", {}), "saved widget state: run scripts/notebook_outputs.py strip"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        for out in cell.get("outputs", []):
            assert not any(k.startswith("image/") for k in out.get("data", {})), f"cell {i}: image output"
        if is_checked(cell):
            assert cell["outputs"] and cell["execution_count"] is not None, f"cell {i}: checked but no reference"
        else:
            assert not cell["outputs"], f"cell {i}: output in an unchecked cell"


def test_ignored_folders_hold_no_tracked_files():
    tracked = subprocess.run(["git", "ls-files", "data", "figures", "build", "submissions"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert set(tracked) <= {"data/.gitkeep", "figures/.gitkeep"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_use_public_names_only(path):
    # a notebook calls the package's public API: no `H.module._private` and no `from helpers.x import _private`
    nb = json.loads(path.read_text())
    private = re.compile(r"\bH\.(?:\w+\.)*_[A-Za-z]\w*|from helpers[\w.]* import [^\n]*\b_[A-Za-z]")
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            hits = private.findall("".join(cell["source"]))
            assert not hits, f"cell {i} uses private names: {hits}"


SHEETS = [p for p in NOTEBOOKS if p.name.startswith("sheet")]


@pytest.mark.parametrize("path", SHEETS, ids=[p.name for p in SHEETS])
def test_sheet_notebooks_stay_short(path):
    # issue 25's limits for a hand-in a tutor reads: cells of at most 30 lines, at most 350 code lines, at most
    # four functions or classes defined in the notebook (only what the sheet asks the student to write there)
    cells = ["".join(c["source"]).splitlines() for c in json.loads(path.read_text())["cells"]
             if c["cell_type"] == "code"]
    long = {i: len(lines) for i, lines in enumerate(cells) if len(lines) > 30}
    assert not long, f"code cells longer than 30 lines (code cell index: lines): {long}"
    assert sum(map(len, cells)) <= 350
    defined = [line.strip() for lines in cells for line in lines if re.match(r"\s*(async def|def|class) ", line)]
    assert len(defined) <= 4, defined


@pytest.mark.parametrize("path", SHEETS, ids=[p.name for p in SHEETS])
def test_printed_code_lines_fit_the_pdf(path):
    # scripts/notebook_pdf.CODE_COLUMNS characters fit a code cell's frame; a longer line is broken there, often
    # inside an f-string. Widget cells (tag "widget") are left out of the PDF.
    printed = [c for c in json.loads(path.read_text())["cells"]
               if c["cell_type"] == "code" and "widget" not in c.get("metadata", {}).get("tags", [])]
    long = [line for c in printed for line in "".join(c["source"]).splitlines() if len(line) > 96]
    assert not long, long
