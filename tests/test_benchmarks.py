"""The quick benchmark runs and writes sane JSON. A benchmark is not a test: no timing threshold here."""

import json
import math
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {"filter_vis_features10", "filter_vis_features28", "deep_dream_3_octaves", "cifar_epoch_augmented",
         "sheet5_top10_section", "sheet4_training_both_runs"}


def test_quick_benchmark_writes_its_json(tmp_path):
    output = tmp_path / "latest.json"
    # the README's command: it also installs lucent, the comparator, into benchmarks/.lucent when PyPI is reachable
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "run.sh"), "--quick", "--output", str(output)],
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
    if (ROOT / "benchmarks" / ".lucent" / ".installed").exists():  # installed: its column is filled
        for case in ("filter_vis_features10", "filter_vis_features28"):
            r = results[case]
            assert r["lucent_s"] > 0 and math.isclose(r["speedup_vs_lucent"], r["lucent_s"] / r["ours_s"])
    else:
        assert "lucent is not installed" in result.stdout
    for case in ("filter_vis_features10", "filter_vis_features28", "deep_dream_3_octaves"):
        if "fast_s" in results[case]:  # the bf16 path reaches about the float32 objective
            assert 0.5 < results[case]["fast_objective_ratio"] < 2, results[case]
    assert not list(tmp_path.glob("*.partial"))
