#!/usr/bin/env bash
# The test command: ruff, the unit tests and every notebook under nbval, in quick mode.
# Offline stand-ins are allowed (CNNVIS_OFFLINE=1): real weights and data are still used where they are on disk.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k images -x
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv
export CNNVIS_QUICK=1 CNNVIS_OFFLINE=1 CNNVIS_PROGRESS=0
echo "ruff check:"
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 \
  --nbval-sanitize-with tests/sanitize.cfg "$@"
