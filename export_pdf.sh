#!/usr/bin/env bash
# Produce the submissions: execute the sheet notebooks, convert them to PDF, pack Surname-Matriculation.zip.
# ./export_pdf.sh --help explains the options. The arguments are checked before anything is installed; the PDF
# needs no system package (pandoc and Typst come from pip, see scripts/notebook_pdf.py).
set -euo pipefail
cd "$(dirname "$0")"
for arg in "$@"; do
  case "$arg" in -h|--help) exec python3 scripts/export.py --help ;; esac
done
python3 scripts/export.py --check "$@" || exit $?
source scripts/venv.sh
ensure_venv
exec "$VENV/bin/python" scripts/export.py "$@"
