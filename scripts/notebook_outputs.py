"""Keep committed notebooks as sources: only the nbval-checked cells keep their (text) outputs.

    python scripts/notebook_outputs.py strip notebooks/sheet4.ipynb      # drop every other output
    python scripts/notebook_outputs.py refresh notebooks/sheet4.ipynb    # re-run quick+offline, store checked outputs

A checked cell has the tag ``nbval-check-output`` or a line ``# NBVAL_CHECK_OUTPUT`` of its own. Its outputs
must be the same in quick and full mode (shapes, hand computations, parameter counts), since nbval compares
them in the test run.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import nbformat

TEXT_MIMES = ("text/plain",)


def is_checked(cell) -> bool:
    if cell.cell_type != "code":
        return False
    tags = cell.get("metadata", {}).get("tags", [])
    return "nbval-check-output" in tags or any(line.strip() == "# NBVAL_CHECK_OUTPUT" for line in
                                               cell.source.splitlines())


def text_outputs(outputs: list) -> list:
    """Stream stdout and text/plain results only: no images, no widgets, no stderr."""
    kept = []
    for out in outputs:
        if out.output_type == "stream" and out.name == "stdout":
            kept.append(out)
        elif out.output_type in ("execute_result", "display_data"):
            data = {k: v for k, v in out.get("data", {}).items() if k in TEXT_MIMES}
            if data and "application/vnd.jupyter.widget-view+json" not in out.get("data", {}):
                new = copy.deepcopy(out)
                new["data"] = data
                new["metadata"] = {}
                kept.append(new)
    return kept


def strip(nb) -> None:
    nb.metadata.pop("widgets", None)
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        if is_checked(cell) and cell.outputs:
            count += 1
            cell.outputs = text_outputs(cell.outputs)
            cell.execution_count = count
        else:
            cell.outputs = []
            cell.execution_count = None


def refresh(path: Path, nb) -> None:
    from nbclient import NotebookClient

    env_backup = dict(os.environ)
    os.environ.update({"CNNVIS_QUICK": "1", "CNNVIS_OFFLINE": "1", "CNNVIS_PROGRESS": "0"})
    try:
        executed = copy.deepcopy(nb)
        NotebookClient(executed, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    for cell, ran in zip(nb.cells, executed.cells, strict=True):
        if is_checked(cell):
            cell.outputs = ran.outputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["strip", "refresh"])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.action == "refresh":
            refresh(path, nb)
        strip(nb)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"{args.action}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
