# Sourced by run_tests.sh and export_pdf.sh: create or reuse the project's virtual environment (.venv) and
# install the pinned requirements into it when requirements.txt or pyproject.toml changed since last time.
# Sets VENV to the environment's folder. Override the interpreter with PYTHON=/path/to/python3.11.

ensure_venv() {
  local root py stamp
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  VENV="$root/.venv"
  if [ ! -x "$VENV/bin/python" ]; then
    py="${PYTHON:-}"
    if [ -z "$py" ]; then
      for candidate in python3.11 python3.12 python3.13 python3.10 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then py="$candidate"; break; fi
      done
    fi
    if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      echo "error: Python 3.10 or newer is needed (3.11 is tested); on Debian/Ubuntu: sudo apt-get install python3 python3-venv" >&2
      return 1
    fi
    echo "Creating the virtual environment $VENV with $("$py" --version 2>&1) ..."
    if ! "$py" -m venv "$VENV"; then
      rm -rf "$VENV"
      echo "error: '$py -m venv' failed; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2
      return 1
    fi
  fi
  stamp="$(cat "$root/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$VENV/.cnnvis-installed" 2>/dev/null)" != "$stamp" ]; then
    echo "Installing the pinned requirements into $VENV (a few minutes the first time) ..."
    "$VENV/bin/python" -m pip install --quiet -r "$root/requirements.txt" || return 1
    "$VENV/bin/python" -m pip install --quiet --no-deps -e "$root" || return 1
    echo "$stamp" > "$VENV/.cnnvis-installed"
  fi
}
