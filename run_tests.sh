#!/usr/bin/env bash
# The test command: ruff, the unit tests and every notebook under nbval, in quick mode.
# Offline stand-ins are allowed (CNNVIS_OFFLINE=1): real weights and data are still used where they are on disk.
# Extra arguments go to pytest, e.g. ./run_tests.sh -k images -x (then the second, other-rounding pass is left out)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv
export CNNVIS_QUICK=1 CNNVIS_OFFLINE=1 CNNVIS_PROGRESS=0
echo "ruff check:"
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest tests notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 \
  --nbval-sanitize-with tests/sanitize.cfg "$@"
[ $# -gt 0 ] && exit 0
# The numerical tests once more under other rounding, so that a comparison that holds only for this CPU's kernels
# fails here too: ATen's scalar kernels, and every convolution and linear layer perturbed by 4 fp32 rounding steps
# in a pattern that depends on the batch size (tests/conftest.py, --fp-noise). About a minute.
echo "numerical tests under other rounding (ATEN_CPU_CAPABILITY=default, --fp-noise):"
ATEN_CPU_CAPABILITY=default exec "$VENV/bin/python" -m pytest tests --fp-noise -q -p no:cacheprovider \
  --ignore=tests/test_browser.py --ignore=tests/test_export.py --ignore=tests/test_notebook_pdf.py \
  --ignore=tests/test_benchmarks.py --ignore=tests/test_notebooks_clean.py
