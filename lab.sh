#!/usr/bin/env bash
# Open the notebooks in JupyterLab: the project's .venv (created and filled from requirements.txt, which pins
# JupyterLab, the first time), the kernel "Python (cnnvis)" registered in it, JupyterLab started on notebooks/.
# Extra arguments go to `jupyter lab`, e.g. ./lab.sh --port 8890 --no-browser
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv
"$VENV/bin/python" -m ipykernel install --sys-prefix --name cnnvis --display-name "Python (cnnvis)" >/dev/null
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root)  # Jupyter refuses root without it (containers, Colab-like VMs)
exec "$VENV/bin/python" -m jupyterlab --notebook-dir=notebooks "${extra[@]}" "$@"
