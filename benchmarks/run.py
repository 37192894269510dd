"""Benchmarks: the textbook loops (written here) against the ``helpers`` implementations, same work, one process.

    .venv/bin/python benchmarks/run.py            # full cases (several minutes on 2 CPU cores)
    .venv/bin/python benchmarks/run.py --quick    # tiny cases, seconds (used by the tests)

Prints a table of seconds and speed-ups and writes ``benchmarks/results/latest.json`` as
``{case: {baseline_s, ours_s, speedup, ...}}``. Weights are random (the same arithmetic as pretrained ones);
CIFAR-10 is the real set when on disk, else the synthetic stand-in. The textbook loops are what a course
script does: the full model with a forward hook, weight gradients on, a DataLoader with per-image transforms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import helpers as H  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LUCENT_DIR = ROOT / "benchmarks" / ".lucent"  # lucent, the comparator, installed by benchmarks/run.sh


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, in seconds."""
    return interleaved({"fn": fn}, repeats)[0]["fn"]


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median wall time of each run over ``repeats`` rounds, and each run's last return value. Every round runs
    each function once, in turn, so a change in the machine's speed (another job, heat) hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    values: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, values


# ---------------------------------------------------------------- textbook loops (the baselines)

def textbook_filter_loop(model: nn.Module, layer: str, channel: int, size: int, steps: int,
                         lr: float = 0.1) -> torch.Tensor:
    """The course-script loop: full forward pass with a hook on the layer, weight gradients on, Adam on pixels."""
    store = {}
    handle = H.get_layer(model, layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        img = torch.rand(1, 3, size, size).mul(30 / 255).add(150 / 255)
        img = H.normalize(img).requires_grad_(True)
        opt = torch.optim.Adam([img], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            model(img)
            loss = -store["a"][0, channel].mean()
            loss.backward()
            opt.step()
        return img.detach()
    finally:
        handle.remove()


def textbook_deep_dream(model: nn.Module, image: torch.Tensor, layer: str, steps: int, octaves: int,
                        scale: float, lr: float = 0.02) -> torch.Tensor:
    """The classic DeepDream loop through the full model with a hook and weight gradients on."""
    store = {}
    handle = H.get_layer(model, layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        h, w = image.shape[-2:]
        sizes = [(round(h / scale**k), round(w / scale**k)) for k in reversed(range(octaves))]
        base = [F.interpolate(image, size=s, mode="bilinear", align_corners=False) for s in sizes]
        detail = torch.zeros_like(base[0])
        for size, octave_base in zip(sizes, base, strict=True):
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            img = (octave_base + detail).requires_grad_(True)
            for _ in range(steps):
                model(img)
                loss = store["a"].norm()
                model.zero_grad()
                loss.backward()
                with torch.no_grad():
                    img += lr / img.grad.abs().mean() * img.grad
                    img.grad = None
            detail = img.detach() - octave_base
        return (octave_base + detail).detach()
    finally:
        handle.remove()


def textbook_cifar_epoch(root: Path, subset: int | None) -> None:
    """One epoch of LeNet as in the sheet: DataLoader, per-image PIL transforms (flip, crop pad 4, normalize)."""
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    transform = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4), T.ToTensor(),
                           T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    dataset = H.cifar10_dataset(root, True, subset=subset)
    dataset.transform = transform
    model = H.LeNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for x, y in DataLoader(dataset, batch_size=16, shuffle=True):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


# ---------------------------------------------------------------- cases

def load_lucent():
    """lucent's ``render_vis`` pieces when installed (``benchmarks/run.sh`` puts it in ``benchmarks/.lucent``),
    else None."""
    if LUCENT_DIR.is_dir() and str(LUCENT_DIR) not in sys.path:
        sys.path.append(str(LUCENT_DIR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from lucent.optvis import objectives, param, render
    except ImportError:
        return None
    return objectives, param, render


def lucent_filter_loop(lucent, model: nn.Module, layer: str, channel: int, size: int, steps: int) -> None:
    """lucent's default call for one channel: FFT-parametrized image, its standard transforms, Adam."""
    objectives, param, render = lucent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        render.render_vis(model, objectives.channel(layer.replace(".", "_"), channel),
                          param_f=lambda: param.image(size), thresholds=(steps,), show_image=False,
                          progress=False)


def case_filter(model: nn.Module, layer: str, size: int, steps: int, repeats: int, lucent) -> dict:
    channel = 7

    def ours(amp: bool) -> Callable[[], H.AscentResult]:
        return lambda: H.visualize_filter(model, layer, channel, steps=steps, start=size, amp=amp, clamp=False,
                                          show_progress=False)

    runs = {"baseline": lambda: textbook_filter_loop(model, layer, channel, size, steps), "ours": ours(False)}
    if H.fast_bf16():
        runs["fast"] = ours(True)
    if lucent is not None:
        runs["lucent"] = lambda: lucent_filter_loop(lucent, model, layer, channel, size, steps)
    t, values = interleaved(runs, repeats)
    per_step = {name: seconds / steps for name, seconds in t.items()}
    out = {"baseline_s": per_step["baseline"], "ours_s": per_step["ours"],
           "speedup": per_step["baseline"] / per_step["ours"], "unit": "s/step",
           "work": f"VGG16 {layer}, {size} px, {steps} steps, one channel (median of {repeats})"}
    if "fast" in per_step:  # objective of the bf16 run's image over that of the float32 run, same steps
        out.update(fast_s=per_step["fast"], fast_speedup=per_step["baseline"] / per_step["fast"],
                   fast_objective_ratio=float(values["fast"].score[0] / values["ours"].score[0]))
    if "lucent" in per_step:
        out.update(lucent_s=per_step["lucent"], speedup_vs_lucent=per_step["lucent"] / per_step["ours"])
    return out


def case_deep_dream(model: nn.Module, size: int, steps: int, repeats: int) -> dict:
    from skimage import data

    image = H.load_image(data.astronaut(), size, device="cpu")
    layer = "features.28"

    def ours(amp: bool) -> Callable[[], H.DreamResult]:
        return lambda: H.deep_dream(model, image, layer, steps=steps, octaves=3, octave_scale=1.4, amp=amp,
                                    show_progress=False)

    runs = {"baseline": lambda: textbook_deep_dream(model, image, layer, steps, 3, 1.4), "ours": ours(False)}
    if H.fast_bf16():
        runs["fast"] = ours(True)
    t, values = interleaved(runs, repeats)
    out = {"baseline_s": t["baseline"], "ours_s": t["ours"], "speedup": t["baseline"] / t["ours"],
           "unit": "s total",
           "work": f"VGG16 to {layer}, 3 octaves up to {size} px x {steps} steps (median of {repeats})"}
    if "fast" in t:  # objective at the end of the last octave, bf16 run over float32 run
        out.update(fast_s=t["fast"], fast_speedup=t["baseline"] / t["fast"],
                   fast_objective_ratio=float(values["fast"].octave_end[-1, 0] / values["ours"].octave_end[-1, 0]))
    return out


def case_cifar(subset: int | None, repeats: int) -> dict:
    root = H.DATA_DIR
    train, _ = H.cifar10_loaders(root, augment=True, normalize=True, subset=subset, fast=True)
    model = H.LeNet()
    # the bare model step: the same number of Adam steps on one fixed batch, no data pipeline at all
    bare_model = H.LeNet().train()
    opt = torch.optim.Adam(bare_model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))

    def bare() -> None:
        for _ in range(len(train)):
            opt.zero_grad()
            F.cross_entropy(bare_model(x), y).backward()
            opt.step()

    t, _ = interleaved({"baseline": lambda: textbook_cifar_epoch(root, subset),
                        "ours": lambda: H.fit(model, train, None, 1, show_progress=False), "bare": bare}, repeats)
    return {"baseline_s": t["baseline"], "ours_s": t["ours"], "speedup": t["baseline"] / t["ours"],
            "bare_model_s": t["bare"], "ours_over_bare": t["ours"] / t["bare"], "unit": "s/epoch",
            "work": f"LeNet, 1 epoch of {len(train.dataset)} images, batch 16, flip+crop augmentation "
                    f"(median of {repeats})"}


def sheet4_data(n_train: int, n_test: int) -> tuple:
    """CIFAR-10's train and test split when on disk (cut to the sizes), else the synthetic stand-in made that large
    in memory (nothing written: the stand-in on disk keeps its size)."""
    splits = []
    for train, n in ((True, n_train), (False, n_test)):
        dataset = H.cifar10_dataset(H.DATA_DIR, train, subset=n)
        if len(dataset) < n:  # the synthetic stand-in on disk is smaller than CIFAR-10
            images, labels = H.synthetic_cifar10_images(n, seed=0 if train else 1)
            dataset.data, dataset.targets = images, labels.tolist()
        splits.append(dataset)
    return tuple(splits)


def sheet4_runs(train_set, test_set, seed: int) -> dict:
    """Sheet 4's two trainings as its cells 3.3 and 3.4 set them up: plain, and normalized + augmented."""
    runs = {}
    for name, changed in (("plain", False), ("augmented", True)):
        torch.manual_seed(seed)
        runs[name] = (H.LeNet(), H.TensorLoader(train_set, 16, shuffle=True, augment=changed, normalize=changed,
                                                seed=seed),
                      H.TensorLoader(test_set, 500, shuffle=False, normalize=changed))
    return runs


def case_sheet4_training(n_train: int, n_test: int, epochs: int) -> dict:
    """Both trainings of sheet 4, one after the other in this process (fit, threads="auto", as the notebook did
    before issue 23) against fit_many (one worker process per run). Besides the times: the largest difference of
    the two paths' test-accuracy curves for the same seed, next to that of the fast path for two seeds."""
    train_set, test_set = sheet4_data(n_train, n_test)

    def eager(seed: int) -> dict:
        return {name: H.fit(model, train, test, epochs, lr=1e-3, threads="auto", show_progress=False)
                for name, (model, train, test) in sheet4_runs(train_set, test_set, seed).items()}

    def fast(seed: int) -> dict:
        return H.fit_many(sheet4_runs(train_set, test_set, seed), epochs, lr=1e-3, threads="auto",
                          show_progress=False)

    t, values = interleaved({"baseline": lambda: eager(0), "ours": lambda: fast(0), "seed1": lambda: fast(1)}, 1)

    def gap(a: dict, b: dict) -> float:  # percentage points, largest over runs and epochs
        return 100 * max(abs(x - y) for name in a for x, y in zip(a[name].test_acc, b[name].test_acc, strict=True))

    ours = values["ours"]
    return {"baseline_s": t["baseline"], "ours_s": t["ours"], "speedup": t["baseline"] / t["ours"],
            "unit": "s for both runs",
            "curve_gap_points": gap(values["baseline"], ours), "seed_spread_points": gap(ours, values["seed1"]),
            "start_s": t["ours"] - max(sum(h.seconds) for h in ours.values()),  # spawning, importing, sending
            "final_test_acc": {name: h.test_acc[-1] for name, h in ours.items()},
            "worker_threads": {name: h.threads for name, h in ours.items()},
            "work": f"LeNet plain + augmented, {epochs} epochs of {len(train_set)} images, test {len(test_set)}, "
                    f"batch 16, Adam 1e-3; eager in one process vs fit_many on {os.cpu_count()} cores"}


def case_top10(model: nn.Module, size: int, steps: int, photos: int, k: int) -> dict:
    images = list(H.photo_set(photos, size=size, device="cpu").values())
    layer = "features.17"

    def baseline() -> None:
        store = {}
        handle = H.get_layer(model, layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        try:
            for img in images:
                model(img)
                top = store["a"][0].mean(dim=(1, 2)).topk(k).indices.tolist()
                for channel in top:
                    textbook_filter_loop(model, layer, channel, size, steps)
        finally:
            handle.remove()

    def ours() -> None:
        for img in images:
            _, channels = H.top_filters(model, img, layer, k)
            H.visualize_filter(model, layer, channels[0].tolist(), steps=steps, start=size, clamp=False,
                               show_progress=False)

    b, o = timed(baseline), timed(ours)
    return {"baseline_s": b, "ours_s": o, "speedup": b / o, "unit": "s total",
            "work": f"{photos} photos x top {k} filters of {layer}, {size} px, {steps} steps"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny cases (seconds), for the tests")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--cases", nargs="+", metavar="CASE",
                        help="run only these cases and replace just their entries in the output file")
    args = parser.parse_args(argv)
    os.environ.setdefault("CNNVIS_OFFLINE", "1")  # random weights / synthetic data when nothing is cached
    warnings.simplefilter("ignore", H.OfflineStandInWarning)
    torch.manual_seed(0)
    model = H.pretrained_model("vgg16", pretrained=False, device="cpu")
    lucent = load_lucent()
    if args.quick:
        plan = {
            "filter_vis_features10": lambda: case_filter(model, "features.10", 64, 2, 1, lucent),
            "filter_vis_features28": lambda: case_filter(model, "features.28", 64, 2, 1, lucent),
            "deep_dream_3_octaves": lambda: case_deep_dream(model, 96, 1, 1),
            "cifar_epoch_augmented": lambda: case_cifar(256, 1),
            "sheet5_top10_section": lambda: case_top10(model, 64, 1, 2, 3),
            "sheet4_training_both_runs": lambda: case_sheet4_training(1_000, 500, 1),
        }
    else:
        plan = {
            "filter_vis_features10": lambda: case_filter(model, "features.10", 224, 20, 3, lucent),
            "filter_vis_features28": lambda: case_filter(model, "features.28", 224, 20, 3, lucent),
            "deep_dream_3_octaves": lambda: case_deep_dream(model, 512, 10, 2),
            "cifar_epoch_augmented": lambda: case_cifar(None, 3),
            "sheet5_top10_section": lambda: case_top10(model, 128, 10, 5, 10),
            "sheet4_training_both_runs": lambda: case_sheet4_training(50_000, 10_000, 10),
        }
    if lucent is None:
        print("lucent is not installed: no lucent column (benchmarks/run.sh installs it into benchmarks/.lucent)")
    if args.cases:
        unknown = sorted(set(args.cases) - set(plan))
        if unknown:
            parser.error(f"unknown case(s) {', '.join(unknown)}; the cases are {', '.join(plan)}")
        plan = {name: run for name, run in plan.items() if name in args.cases}
    results = json.loads(args.output.read_text()) if args.cases and args.output.exists() else {}
    print(f"{'case':24} {'baseline':>9} {'ours':>9} {'speedup':>8} {'fast':>9} {'speedup':>8} {'lucent':>9} "
          f"{'ours vs':>8}  work")
    for name, run in plan.items():
        r = results[name] = run()
        r["measured"] = time.strftime("%Y-%m-%d %H:%M")
        fast = f"{r['fast_s']:9.3f} {r['fast_speedup']:7.2f}x" if "fast_s" in r else f"{'-':>9} {'-':>8}"
        luc = f"{r['lucent_s']:9.3f} {r['speedup_vs_lucent']:7.2f}x" if "lucent_s" in r else f"{'-':>9} {'-':>8}"
        print(f"{name:24} {r['baseline_s']:9.3f} {r['ours_s']:9.3f} {r['speedup']:7.2f}x {fast} {luc}  "
              f"{r['work']} ({r['unit']})", flush=True)
    assert all(math.isfinite(r["speedup"]) for r in results.values())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"bf16 fast path {'on' if H.fast_bf16() else 'not available'}, {'quick' if args.quick else 'full'} cases")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".partial")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
