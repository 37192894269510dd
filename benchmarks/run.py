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


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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

def case_filter(model: nn.Module, layer: str, size: int, steps: int) -> dict:
    channel = 7
    baseline = timed(lambda: textbook_filter_loop(model, layer, channel, size, steps)) / steps
    ours = timed(lambda: H.visualize_filter(model, layer, channel, steps=steps, size=size,
                                            show_progress=False)) / steps
    out = {"baseline_s": baseline, "ours_s": ours, "speedup": baseline / ours, "unit": "s/step",
           "work": f"VGG16 {layer}, {size} px, {steps} steps"}
    if H.fast_bf16():
        fast_result = H.visualize_filter(model, layer, channel, steps=steps, size=size, amp=True,
                                         show_progress=False)
        exact = H.visualize_filter(model, layer, channel, steps=steps, size=size, show_progress=False)
        fast = timed(lambda: H.visualize_filter(model, layer, channel, steps=steps, size=size, amp=True,
                                                show_progress=False)) / steps
        out.update(fast_s=fast, fast_speedup=baseline / fast,
                   fast_objective_ratio=float(fast_result.objective[0] / exact.objective[0]))
    return out


def case_deep_dream(model: nn.Module, size: int, steps: int) -> dict:
    from skimage import data

    image = H.load_image(data.astronaut(), size, device="cpu")
    layer = "features.28"
    baseline = timed(lambda: textbook_deep_dream(model, image, layer, steps, 3, 1.4))
    ours = timed(lambda: H.deep_dream(model, image, layer, steps=steps, octaves=3, octave_scale=1.4,
                                      show_progress=False))
    out = {"baseline_s": baseline, "ours_s": ours, "speedup": baseline / ours, "unit": "s total",
           "work": f"VGG16 to {layer}, 3 octaves up to {size} px x {steps} steps"}
    if H.fast_bf16():
        fast = timed(lambda: H.deep_dream(model, image, layer, steps=steps, octaves=3, octave_scale=1.4,
                                          amp=True, show_progress=False))
        out.update(fast_s=fast, fast_speedup=baseline / fast)
    return out


def case_cifar(subset: int | None) -> dict:
    root = H.DATA_DIR
    baseline = timed(lambda: textbook_cifar_epoch(root, subset))
    train, _ = H.cifar10_loaders(root, augment=True, normalize=True, subset=subset, fast=True)
    model = H.LeNet()
    ours = timed(lambda: H.fit(model, train, None, 1, show_progress=False))
    # the bare model step: the same number of Adam steps on one fixed batch, no data pipeline at all
    model = H.LeNet().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))

    def bare() -> None:
        for _ in range(len(train)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

    step = timed(bare)
    return {"baseline_s": baseline, "ours_s": ours, "speedup": baseline / ours, "bare_model_s": step,
            "ours_over_bare": ours / step, "unit": "s/epoch",
            "work": f"LeNet, 1 epoch of {len(train.dataset)} images, batch 16, flip+crop augmentation"}


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
            channels, _ = H.top_filters(model, img, layer, k)
            H.visualize_filter(model, layer, channels[0].tolist(), steps=steps, size=size, show_progress=False)

    b, o = timed(baseline), timed(ours)
    return {"baseline_s": b, "ours_s": o, "speedup": b / o, "unit": "s total",
            "work": f"{photos} photos x top {k} filters of {layer}, {size} px, {steps} steps"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny cases (seconds), for the tests")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("CNNVIS_OFFLINE", "1")  # random weights / synthetic data when nothing is cached
    warnings.simplefilter("ignore", H.OfflineStandInWarning)
    torch.manual_seed(0)
    model = H.pretrained_model("vgg16", pretrained=False, device="cpu")
    if args.quick:
        plan = {
            "filter_vis_features10": lambda: case_filter(model, "features.10", 64, 2),
            "filter_vis_features28": lambda: case_filter(model, "features.28", 64, 2),
            "deep_dream_3_octaves": lambda: case_deep_dream(model, 96, 1),
            "cifar_epoch_augmented": lambda: case_cifar(256),
            "sheet5_top10_section": lambda: case_top10(model, 64, 1, 2, 3),
        }
    else:
        plan = {
            "filter_vis_features10": lambda: case_filter(model, "features.10", 224, 10),
            "filter_vis_features28": lambda: case_filter(model, "features.28", 224, 10),
            "deep_dream_3_octaves": lambda: case_deep_dream(model, 512, 10),
            "cifar_epoch_augmented": lambda: case_cifar(None),
            "sheet5_top10_section": lambda: case_top10(model, 128, 10, 5, 10),
        }
    results = {}
    print(f"{'case':26} {'baseline':>10} {'ours':>10} {'speedup':>8}  {'fast path':>10}  work")
    for name, run in plan.items():
        r = results[name] = run()
        fast = f"{r['fast_speedup']:.2f}x" if "fast_speedup" in r else "-"
        print(f"{name:26} {r['baseline_s']:10.3f} {r['ours_s']:10.3f} {r['speedup']:7.2f}x  {fast:>10}  "
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
