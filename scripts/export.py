"""Build the submissions: execute each sheet's notebook, convert it to PDF, pack Surname-Matriculation.zip.

For every sheet: the notebook runs top to bottom in a build folder (the committed notebook is never touched),
the executed copy becomes a PDF (nbconvert -> pandoc -> Typst, all from pip: see notebook_pdf.py) that ends
with a section "Where the code is" (the helpers modules the notebook calls, one line each), and a ZIP holds:

  Surname-Matriculation-sheetN.pdf   the PDF
  sheetN.ipynb                       the executed notebook WITHOUT its figures: text outputs (printed numbers,
                                     tables) are kept, image outputs and widget state are removed: every figure
                                     is in the PDF already (a second copy made sheet 5's ZIP 65 MB, now 3 MB)
  helpers/**/*.py                    the package the notebook imports, as files (with toolbox/ and trust/)
  tests/*.py                         the package's tests, which the solution's text cites
  requirements.txt, README.txt       the exact pins, and how to re-run: pip install -r requirements.txt, then
                                     run sheetN.ipynb from the ZIP's folder (it imports helpers from there)

Everything is written to temporary names and moved into place only when the sheet is complete, so a failure or
Ctrl-C leaves no partial file and never replaces an earlier good ZIP. The executed notebook with its figures
stays in build/sheetN/.

File names: the surname keeps its letters, spelled in ASCII: German umlauts become ae/oe/ue and ß ss, other
letters are transliterated by anyascii (Łukasz -> Lukasz, Dvořák -> Dvorak, Иванов -> Ivanov), spaces and
apostrophes are removed (also those transliteration writes: Гоголь -> Gogol) and hyphens kept (De la Cruz ->
DelaCruz). A letter without an ASCII spelling is refused with a message, never dropped. A matriculation
number is 6 to 10 digits (LMU issues 8).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sheet:
    key: str
    notebook: str
    title: str
    submission: bool = True  # packed into Surname-Matriculation.zip; False: a PDF only (the gallery)

    @property
    def folder(self) -> str:
        return f"sheet{self.key}" if self.submission else self.key


SHEETS = {
    "4": Sheet("4", "sheet4.ipynb", "Exercise Sheet 4: Convolutional Neural Networks"),
    "5": Sheet("5", "sheet5.ipynb", "Exercise Sheet 5: What Does a Neural Network See?"),
    "gallery": Sheet("gallery", "gallery.ipynb", "Gallery: The Lecture's Visualization Techniques", submission=False),
}
WIDGET_TAG = "widget"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT = 3600  # seconds one cell may run: a hung kernel fails the export instead of blocking it forever
# German spelling first (anyascii writes ü as u); every other letter goes through anyascii.
GERMAN = {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss", "ẞ": "SS"}


class ExportError(Exception):
    """A problem the user can fix; printed as one line."""


def checked_surname(surname: str) -> str:
    """The surname in NFC if it is letters with single spaces, hyphens or apostrophes between them. Raises
    ExportError."""
    name = unicodedata.normalize("NFC", surname.strip())
    if not name:
        raise ExportError("the surname is empty: pass --surname or set CNNVIS_SURNAME")
    if len(name) > 64 or not re.fullmatch(r"[^\W\d_]+(?:[ '’-][^\W\d_]+)*", name):
        raise ExportError(f"surname {surname!r} is not a name: use letters, with single spaces, hyphens or "
                          "apostrophes between them")
    return name


def file_name_surname(surname: str) -> str:
    """The surname as it appears in file names (see the module docstring). Raises ExportError."""
    from anyascii import anyascii

    name = checked_surname(surname)
    parts = []
    for ch in re.sub(r"[ '’]", "", name):
        spelled = "-" if ch == "-" else GERMAN.get(ch) or anyascii(ch)
        letters = re.sub(r"['`]", "", spelled)  # apostrophes are removed, also those anyascii writes (ь -> ')
        if not spelled or not re.fullmatch(r"[A-Za-z]*|-", letters):  # no ASCII spelling: never drop the letter
            raise ExportError(f"surname {surname!r}: the letter {ch!r} has no ASCII spelling; pass --surname "
                              "spelled in Latin letters as on your student ID")
        parts.append(letters)
    spelled = "".join(parts)
    if not re.fullmatch(r"[A-Za-z]+(?:-[A-Za-z]+)*", spelled):  # e.g. only soft signs: nothing left to name a file
        raise ExportError(f"surname {surname!r} spells as {spelled!r} in ASCII: pass --surname spelled in Latin "
                          "letters as on your student ID")
    return spelled


def check_matriculation(number: str) -> str:
    number = number.strip()
    if not number:
        raise ExportError("the matriculation number is empty: pass --matriculation or set CNNVIS_MATRICULATION")
    if not re.fullmatch(r"[0-9]{6,10}", number):
        raise ExportError(f"matriculation number {number!r} must be 6 to 10 digits (LMU issues 8)")
    return number


def kernel_profile(folder: Path) -> Path:
    """An IPython profile for the export kernel: PNG figures at 160 dpi, crisp in print (about 1000 px across a
    page-wide figure) without making noise-like images (random weights) bloat the ZIP."""
    config = folder / "profile_default" / "ipython_kernel_config.py"
    config.parent.mkdir(parents=True)
    config.write_text("c.InlineBackend.figure_formats = {'png'}\n"
                      "c.InlineBackend.rc = {'savefig.dpi': 160, 'figure.dpi': 160}\n")
    return folder


def run_notebook(source: Path, destination: Path) -> int:
    """Child process: run the notebook top to bottom in its own folder and write the executed copy.

    Prints one line and returns 3 when a cell raises.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(source, as_version=4)
    # Interactive widget cells are not run headless: the PDF drops them anyway, and nbclient can wait forever
    # for a widget's comm traffic after such a cell has finished. They stay in the executed copy, unexecuted.
    widget_cells = {i: cell for i, cell in enumerate(nb.cells)
                    if cell.cell_type == "code" and WIDGET_TAG in cell.get("metadata", {}).get("tags", [])}
    for i, cell in widget_cells.items():
        nb.cells[i] = nbformat.v4.new_raw_cell(cell.source)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(source.parent)}})
    try:
        client.execute()
    except CellTimeoutError:
        print(f"a cell ran longer than {CELL_TIMEOUT} s (a hung kernel?)", file=sys.stderr)
        return 3
    except CellExecutionError as e:
        for index, cell in enumerate(nb.cells, start=1):
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                print(f"cell {index} raised {errors[0]['ename']}: {errors[0]['evalue']}", file=sys.stderr)
                return 3
        print(f"execution failed: {str(e).strip().splitlines()[-1]}", file=sys.stderr)
        return 3
    for i, cell in widget_cells.items():
        cell.outputs, cell.execution_count = [], None
        nb.cells[i] = cell
    nbformat.write(nb, destination)
    return 0


def execute(source: Path, destination: Path) -> None:
    """Execute ``source`` in a child process (its own session, so that Ctrl-C reaches only this process,
    which then stops the child and its kernel cleanly). Raises ExportError naming the failing cell."""
    shown = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    log = destination.with_suffix(".log")
    with open(log, "w+") as err:
        child = subprocess.Popen([sys.executable, __file__, "--run-notebook", str(source), str(destination)],
                                 stdout=err, stderr=err, start_new_session=True)
        try:
            code = child.wait()
        except BaseException:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
        if code != 0:
            err.seek(0)
            lines = [line.strip() for line in err if line.strip() and "without encryption" not in line]
            if code == 3 and lines:
                raise ExportError(f"{shown}: {lines[-1]}")
            raise ExportError(f"{shown}: the notebook run failed (exit {code}): "
                              f"{lines[-1] if lines else 'no message'}")


def to_pdf(executed: Path, pdf: Path, *, title: str, name: str, matriculation: str, zip_name: str | None) -> None:
    """Convert the executed notebook to ``pdf`` (widget cells dropped); its closing section names ``zip_name``,
    the ZIP that holds the code (None: not a submission). Raises ExportError."""
    import datetime

    import nbformat
    from notebook_pdf import PdfError, notebook_pdf

    today = datetime.date.today()
    try:
        result = notebook_pdf(nbformat.read(executed, as_version=4), pdf, title=title, name=name,
                              matriculation=matriculation, date=f"{today.day} {today:%B %Y}", zip_name=zip_name,
                              notebook_name=executed.name if zip_name else None)
    except PdfError as e:
        raise ExportError(f"{executed.name}: {e}") from None
    if result.missing_glyphs:
        print(f"warning: {executed.name}: no font of the PDF has {' '.join(result.missing_glyphs)}; "
              "they show as boxes", file=sys.stderr)


ZIP_README = """\
{notebook}: the solution's code, executed; its figures are in {pdf} (the notebook keeps its text outputs,
its figures were removed to keep this ZIP small). helpers/ is the package the notebook imports, tests/ its
tests (they run in the project's repository, beside its notebooks and data).

To re-run it (Python 3.10 or newer, 3.11 tested):
    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/jupyter lab {notebook}          # in this folder, so that `import helpers` finds helpers/
CNNVIS_QUICK=1 shrinks every run to seconds; without internet, CNNVIS_OFFLINE=1 allows labelled stand-ins.
"""


def zip_notebook(executed: Path) -> str:
    """The executed notebook as the ZIP holds it: text outputs kept, image outputs and widget state removed.

    An output that showed a figure keeps its text form (``<Figure size 640x480 with 1 Axes>``), so the reader
    sees where the figure was; an output with nothing left is dropped.
    """
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.output_type in ("display_data", "execute_result"):
                out.data = {mime: value for mime, value in out.data.items()
                            if not mime.startswith("image/") and mime != WIDGET_MIME}
                out.metadata = {}
                if not out.data:
                    continue
            kept.append(out)
        cell.outputs = kept
    return nbformat.writes(nb)


def pack(zip_path: Path, pdf: Path, executed: Path) -> list[str]:
    """The submission ZIP: the PDF, the executed notebook without figures (`zip_notebook`), the helpers package
    source and its tests, requirements.txt and a README.txt that says how to re-run it. Returns the member
    names."""
    readme = ZIP_README.format(notebook=executed.name, pdf=pdf.name)
    members: list[tuple[str, Path | str]] = [(pdf.name, pdf), (executed.name, zip_notebook(executed)),
                                             ("requirements.txt", ROOT / "requirements.txt"), ("README.txt", readme)]
    package = ROOT / "helpers"
    members += [(f"helpers/{p.relative_to(package).as_posix()}", p) for p in sorted(package.rglob("*.py"))]
    members += [(f"tests/{p.name}", p) for p in sorted((ROOT / "tests").glob("*.py"))]  # the text cites them
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members:
            if isinstance(content, Path):
                zf.write(content, name)
            else:
                zf.writestr(name, content)
    return [name for name, _ in members]


def export_sheet(sheet: Sheet, *, name: str, surname: str, matriculation: str, notebooks: Path, build: Path,
                 out: Path) -> dict[str, float]:
    """Execute, convert and pack one sheet. Returns the seconds per stage. Raises ExportError."""
    source = notebooks / sheet.notebook
    if not source.is_file():
        raise ExportError(f"sheet {sheet.key}: {source} does not exist")
    build_dir, out_dir = build / sheet.folder, out / sheet.folder
    build_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    try:
        _export_in(build_dir, out_dir, sheet, source, name, surname, matriculation, times)
    finally:
        for folder in (build_dir, build):  # leave no empty folders behind after a failure
            with contextlib.suppress(OSError):
                folder.rmdir()
    return times


def _export_in(build_dir: Path, out_dir: Path, sheet: Sheet, source: Path, name: str, surname: str,
               matriculation: str, times: dict[str, float]) -> None:
    with tempfile.TemporaryDirectory(dir=build_dir, prefix=".partial-") as tmp:
        tmp = Path(tmp)
        executed, pdf, zip_path = tmp / sheet.notebook, tmp / f"{name}-{sheet.folder}.pdf", tmp / f"{name}.zip"
        start = time.perf_counter()
        execute(source, executed)
        times["execute"] = time.perf_counter() - start
        start = time.perf_counter()
        to_pdf(executed, pdf, title=sheet.title, name=surname, matriculation=matriculation,
               zip_name=zip_path.name if sheet.submission else None)
        times["pdf"] = time.perf_counter() - start
        if not sheet.submission:  # an extra document: the PDF and the executed notebook, no ZIP
            os.replace(executed, build_dir / executed.name)
            os.replace(pdf, build_dir / pdf.name)
            print(f"{sheet.key}: PDF {build_dir / pdf.name}\n         executed notebook {build_dir / executed.name}")
            return
        start = time.perf_counter()
        pack(zip_path, pdf, executed)
        times["zip"] = time.perf_counter() - start
        # Complete: move into place. The ZIP is copied next to its target first, so the last step is a rename.
        out_dir.mkdir(parents=True, exist_ok=True)
        staged = out_dir / f".{zip_path.name}.partial"
        try:
            shutil.copyfile(zip_path, staged)
            os.replace(executed, build_dir / executed.name)
            os.replace(pdf, build_dir / pdf.name)
            os.replace(staged, out_dir / zip_path.name)
        finally:
            staged.unlink(missing_ok=True)
    print(f"sheet {sheet.key}: {out_dir / zip_path.name}\n"
          f"         PDF {build_dir / pdf.name}\n         executed notebook {build_dir / executed.name}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export_pdf.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Execute the sheet notebooks, convert them to PDF and pack one "
                    "Surname-MatriculationNumber.zip per sheet into submissions/sheetN/.",
        epilog=__doc__.split("\n\n", 1)[1] + "\nExample: ./export_pdf.sh --surname Müller --matriculation "
               "12345678 --sheet 4 --quick  ->  submissions/sheet4/Mueller-12345678.zip")
    parser.add_argument("--surname", default=os.environ.get("CNNVIS_SURNAME", ""),
                        help="your surname (default: $CNNVIS_SURNAME)")
    parser.add_argument("--matriculation", default=os.environ.get("CNNVIS_MATRICULATION", ""),
                        help="your matriculation number (default: $CNNVIS_MATRICULATION)")
    parser.add_argument("--sheet", choices=["4", "5", "gallery", "all"], default="all",
                        help="which sheet; 'gallery' builds the PDF of the technique gallery (not a submission); "
                             "default: all three")
    parser.add_argument("--quick", action="store_true",
                        help="CNNVIS_QUICK=1: seconds per cell, for checking the pipeline; hand in a full run")
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)  # validate only (before the venv)
    parser.add_argument("--notebooks-dir", type=Path, default=ROOT / "notebooks", help=argparse.SUPPRESS)
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "submissions", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--run-notebook":
        return run_notebook(Path(sys.argv[2]), Path(sys.argv[3]))
    args = parse(argv)
    try:
        if args.check and importlib.util.find_spec("anyascii") is None:
            # export_pdf.sh's check before the venv exists: the name's spelling is checked again inside it
            checked_surname(args.surname)
            check_matriculation(args.matriculation)
            return 0
        name = f"{file_name_surname(args.surname)}-{check_matriculation(args.matriculation)}"
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    os.environ["CNNVIS_PROGRESS"] = "0"  # no frozen progress bars in the PDF
    if args.quick:
        os.environ["CNNVIS_QUICK"] = "1"
    print(f"Exporting as {name} ({'quick' if args.quick else 'full'} run)")
    failed, report = [], []
    with tempfile.TemporaryDirectory(prefix="cnnvis-ipython-") as ipython:
        os.environ["IPYTHONDIR"] = str(kernel_profile(Path(ipython)))
        for key in (list(SHEETS) if args.sheet == "all" else [args.sheet]):
            try:
                times = export_sheet(SHEETS[key], name=name, surname=args.surname.strip(),
                                     matriculation=args.matriculation.strip(), notebooks=args.notebooks_dir,
                                     build=args.build_dir, out=args.out_dir)
                report.append((key, times))
            except ExportError as e:
                print(f"error: sheet {key}: {e}", file=sys.stderr)
                failed.append(key)
            except KeyboardInterrupt:
                print(f"\ninterrupted during sheet {key}: nothing of it was written", file=sys.stderr)
                return 130
    for key, times in report:
        stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in times.items())
        print(f"{SHEETS[key].folder}: {stages}, total {sum(times.values()):.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
