"""Build the submission ZIPs (stub of the export issue: executes the notebooks and packs them).

Usage: ./export_pdf.sh --surname Mustermann --matriculation 12345678 [--sheet 4|5|all] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {"4": "sheet4.ipynb", "5": "sheet5.ipynb"}


def file_name_surname(surname: str) -> str:
    """The surname as it appears in the file name: letters kept, diacritics transliterated to ASCII."""
    surname = unicodedata.normalize("NFC", surname.strip())
    if not surname or not re.fullmatch(r"[^\W\d_]+([ '\-][^\W\d_]+)*", surname):
        raise ValueError(f"surname {surname!r} must be letters, optionally joined by a space, hyphen or apostrophe")
    special = {"ß": "ss", "Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Æ": "AE", "æ": "ae", "Đ": "D", "đ": "d"}
    ascii_name = "".join(special.get(ch, ch) for ch in surname)
    ascii_name = unicodedata.normalize("NFKD", ascii_name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[ ']", "", ascii_name)
    if not re.fullmatch(r"[A-Za-z]+(-[A-Za-z]+)*", ascii_name):
        raise ValueError(f"surname {surname!r} has letters that cannot be written in ASCII")
    return ascii_name


def check_matriculation(number: str) -> str:
    number = number.strip()
    if not re.fullmatch(r"\d{6,10}", number):
        raise ValueError(f"matriculation number {number!r} must be 6 to 10 digits")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="export_pdf.sh", description=__doc__.splitlines()[0],
        epilog="Names may also come from CNNVIS_SURNAME and CNNVIS_MATRICULATION. "
               "The surname keeps its letters; diacritics are transliterated (Müller -> Muller, Łukasz -> "
               "Lukasz). A matriculation number is 6 to 10 digits.")
    parser.add_argument("--surname", default=os.environ.get("CNNVIS_SURNAME", ""))
    parser.add_argument("--matriculation", default=os.environ.get("CNNVIS_MATRICULATION", ""))
    parser.add_argument("--sheet", choices=["4", "5", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="CNNVIS_QUICK=1: seconds per cell")
    args = parser.parse_args(argv)
    try:
        name = f"{file_name_surname(args.surname)}-{check_matriculation(args.matriculation)}"
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = {**os.environ, "CNNVIS_PROGRESS": "0"}
    if args.quick:
        env["CNNVIS_QUICK"] = "1"
    sheets = ["4", "5"] if args.sheet == "all" else [args.sheet]
    for sheet in sheets:
        notebook = ROOT / "notebooks" / NOTEBOOKS[sheet]
        if not notebook.exists():
            print(f"sheet {sheet}: {notebook.relative_to(ROOT)} does not exist yet; nothing to pack")
            continue
        build = ROOT / "build" / f"sheet{sheet}"
        build.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                        "--ExecutePreprocessor.timeout=-1", "--output-dir", str(build), str(notebook)],
                       check=True, env=env, cwd=notebook.parent)
        executed = build / notebook.name
        print(f"sheet {sheet}: executed in {time.perf_counter() - start:.0f} s -> {executed}")
        target = ROOT / "submissions" / f"sheet{sheet}" / f"{name}.zip"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".partial", delete=False) as tmp, \
                zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(executed, executed.name)
            for path in sorted((ROOT / "helpers").glob("*.py")):
                zf.write(path, f"helpers/{path.name}")
            zf.write(ROOT / "requirements.txt", "requirements.txt")
        shutil.move(tmp.name, target)
        print(f"sheet {sheet}: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
