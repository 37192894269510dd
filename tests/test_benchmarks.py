"""The quick benchmark runs and writes sane JSON. A benchmark is not a test: no timing threshold here."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {"filter_vis_features10", "filter_vis_features28", "deep_dream_3_octaves", "cifar_epoch_augmented",
         "sheet5_top10_section"}


def test_quick_benchmark_writes_its_json(tmp_path):
    output = tmp_path / "latest.json"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--output", str(output)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(output.read_text())
    assert set(results) == CASES
    for case, r in results.items():
        for key in ("baseline_s", "ours_s", "speedup"):
            assert math.isfinite(r[key]) and r[key] > 0, (case, key, r[key])
        assert math.isclose(r["speedup"], r["baseline_s"] / r["ours_s"], rel_tol=1e-9)
        assert case in result.stdout
    assert results["cifar_epoch_augmented"]["bare_model_s"] > 0
    assert not list(tmp_path.glob("*.partial"))
