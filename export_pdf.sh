#!/usr/bin/env bash
# Produce the submission: execute the sheet notebooks, convert them to PDF, pack Surname-Matriculation.zip.
# Run ./export_pdf.sh --help for the options.
set -euo pipefail
cd "$(dirname "$0")"
for arg in "$@"; do
  if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then exec python3 scripts/export.py --help; fi
done
source scripts/venv.sh
ensure_venv
exec "$VENV/bin/python" scripts/export.py "$@"
