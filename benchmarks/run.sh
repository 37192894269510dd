#!/usr/bin/env bash
# The benchmark in one command: the project's .venv, lucent (the comparator) in benchmarks/.lucent, then
# benchmarks/run.py with the arguments given (--quick for a seconds-long smoke run, --output FILE).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=../scripts/venv.sh
source scripts/venv.sh
ensure_venv

lucent_dir="$root/benchmarks/.lucent"
wanted="$(sha256sum benchmarks/requirements-lucent.txt | cut -d' ' -f1)"
if [ "$(cat "$lucent_dir/.installed" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing lucent (the comparator) into benchmarks/.lucent ..."
  tmp="$(mktemp -d "$root/benchmarks/.lucent-partial.XXXXXX")"
  if "$VENV/bin/python" -m pip install --quiet --no-deps --target "$tmp" -r benchmarks/requirements-lucent.txt; then
    echo "$wanted" > "$tmp/.installed"
    rm -rf "$lucent_dir"
    mv "$tmp" "$lucent_dir"
  else
    rm -rf "$tmp"
    echo "warning: could not install lucent (no access to PyPI?); the benchmark runs without its lucent column" >&2
  fi
fi
exec "$VENV/bin/python" benchmarks/run.py "$@"
