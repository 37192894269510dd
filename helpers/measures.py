"""The statistics the sheets' answers rest on, as small tested functions, and the formatting of their numbers.

Every image argument is ImageNet-normalized ``(N, 3, H, W)`` (like :func:`helpers.load_image`); the measures work
on the displayable pixel values in ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch

from ._checks import frozen_eval, model_device
from .activations import upsample_map
from .images import denormalize
from .receptive import Box
from .saliency import _maps, local_contrast
from .training import History

# --- sheet 5 -------------------------------------------------------------------------------------------------

MINUS = "\u2212"  # the typographic minus of every printed number


def number(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals and a Unicode minus (``-0.5`` -> ``"−0.500"``); NaN (a measure that does
    not apply, e.g. the correlation length of a flat image) -> ``"n/a"``."""
    if math.isnan(x):
        return "n/a"
    return f"{x:.{digits}f}".replace("-", MINUS)


def percent_change(a: float, b: float) -> str:
    """The change from ``a`` to ``b`` relative to ``|a|``, signed, in percent (``"−63%"``); ``"n/a"`` for a = 0."""
    if a == 0:
        return "n/a"
    return f"{100 * (b - a) / abs(a):+.0f}%".replace("-", MINUS)


def before_after(a: float, b: float, digits: int = 3, *, relative: bool = True) -> str:
    """``"0.112 → 0.041 (−63%)"``: two values and the relative change between them (``relative=False``: the
    values only, e.g. when ``a`` may be near 0 and a percentage would mean nothing)."""
    pair = f"{number(a, digits)} → {number(b, digits)}"
    return f"{pair} ({percent_change(a, b)})" if relative else pair


def from_to(a: float, b: float, digits: int = 3, unit: str = "", close: float = 0.05) -> str:
    """``"rises from 0.112 to 0.410"``, ``"falls from 98% to 14%"`` (``unit="%"``) or ``"stays at 0.500"``: the
    direction as the printed values show it (compared after rounding to ``digits``, so the verb never contradicts
    the numbers). A change of at most ``close`` of the larger magnitude is no direction: ``"stays within 5%
    (0.49 px to 0.48 px)"``. ``"goes from n/a to 0.500"`` when either value is NaN."""
    x, y = number(a, digits) + unit, number(b, digits) + unit
    if math.isnan(a) or math.isnan(b):
        return f"goes from {x} to {y}"
    if round(a, digits) == round(b, digits):
        return f"stays at {x}"
    if abs(b - a) <= close * max(abs(a), abs(b)):
        return f"stays within {close:.0%} ({x} to {y})"
    return f"{'rises' if b > a else 'falls'} from {x} to {y}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 3) -> str:
    """A Markdown table; floats are printed with ``digits`` decimals and a Unicode minus, everything else as is."""
    def cell(v: object) -> str:
        return number(v, digits) if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def pixel_change(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two image batches in pixel units (0 = equal, 1 = black against white).
    ``(N, 3, H, W), (N or 1, 3, H, W) -> (N,)``."""
    return (denormalize(a.float()) - denormalize(b.float())).abs().mean(dim=(1, 2, 3))


def brightness(images: torch.Tensor) -> torch.Tensor:
    """Mean pixel value per image, ``(N,)`` in ``[0, 1]``."""
    return denormalize(images.float()).mean(dim=(1, 2, 3))


def at_bounds(images: torch.Tensor) -> torch.Tensor:
    """Share of pixel values within 1/255 of 0 or 1 (at a clamp bound of the ascent), per image, ``(N,)``."""
    rgb = denormalize(images.float())
    return ((rgb < 1 / 255) | (rgb > 254 / 255)).float().mean(dim=(1, 2, 3))


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of max minus min of R, G, B (0 for a grey image, 1 for pure colours), ``(N,)``."""
    rgb = denormalize(images.float()).clamp(0, 1)
    return (rgb.amax(dim=1) - rgb.amin(dim=1)).mean(dim=(1, 2))


def contrast(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute deviation of the pixel values from the image's mean colour, ``(N,)``: a photo's own contrast,
    the scale against which a change of its pixels is judged."""
    rgb = denormalize(images.float())
    return (rgb - rgb.mean(dim=(-2, -1), keepdim=True)).abs().mean(dim=(1, 2, 3))


def correlation_length(images: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """Grain size: the distance (px) at which the radially averaged autocorrelation of each image's grey values
    falls to half its peak (linearly interpolated), without a border band of ``margin`` px. ``(N,)``; NaN for a
    flat image, ``side / 2`` when it never falls to half. White noise gives < 1 px. It is the half-width of the
    autocorrelation: fine strokes repeated over the frame give a short one, whatever the size of their pattern."""
    x = denormalize(images.float()).mean(dim=1)
    if margin:
        x = x[..., margin:-margin, margin:-margin]
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    h, w = x.shape[-2:]
    ac = torch.fft.irfft2(torch.fft.rfft2(x).abs().square(), s=(h, w)).flatten(1)   # circular autocorrelation
    dy, dx = torch.arange(h), torch.arange(w)
    ring = torch.minimum(dy, h - dy)[:, None].float().hypot(torch.minimum(dx, w - dx)[None, :].float())
    ring = ring.round().long().flatten()
    radial = torch.zeros(len(x), int(ring.max()) + 1).index_add_(1, ring, ac) / torch.bincount(ring)
    radial = radial / radial[:, :1].clamp_min(1e-12)
    below = radial < 0.5
    r = below.float().argmax(dim=1).clamp_min(1)                   # first distance below half (0 is the peak)
    hi, lo = radial.gather(1, (r - 1)[:, None])[:, 0], radial.gather(1, r[:, None])[:, 0]
    half = (r - 1) + (hi - 0.5) / (hi - lo).clamp_min(1e-12)
    half = torch.where(below.any(dim=1), half, torch.tensor(min(h, w) / 2))
    return torch.where(x.flatten(1).std(dim=1) < 1e-3, torch.tensor(math.nan), half)


def scaled_gains(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Each channel's gain of mean activation in units of its own spread over positions on the start image:
    ``(mean(after_c) - mean(before_c)) / std(before_c)``. ``(C, h, w), (C, h, w) -> (C,)``; scale-free, so channels
    with large and small activations compare alike (a channel that does not vary on the start gets spread 1e-6)."""
    spread = before.float().flatten(1).std(dim=1).clamp_min(1e-6)
    return (after.float().mean(dim=(-2, -1)) - before.float().mean(dim=(-2, -1))) / spread


def rank_of(values: torch.Tensor, index: int) -> int:
    """Rank (1 = largest) of ``values[index]`` among ``values``: 1 + how many are larger."""
    return 1 + int((values > values[index]).sum())


def mean_overlap(sets: Sequence[set]) -> float:
    """Mean over all pairs of sets of the share of elements they have in common, ``|A & B| / max(|A|, |B|)``."""
    pairs = [len(a & b) / max(len(a), len(b), 1) for i, a in enumerate(sets) for b in sets[i + 1:]]
    if not pairs:
        raise ValueError("mean_overlap needs at least two sets")
    return sum(pairs) / len(pairs)


def largest_keeping(values: Mapping[float, float], keep: float) -> float | None:
    """The largest key ``w > 0`` whose value is at least ``keep`` times the value at ``w = 0`` (a positive
    reference), e.g. the largest TV weight keeping half the activation without the prior; None if there is none."""
    if 0 not in values:
        raise ValueError("largest_keeping needs the reference value at key 0")
    ref = values[0]
    ok = [w for w, v in values.items() if w > 0 and ref > 0 and v >= keep * ref]
    return max(ok) if ok else None


def largest_within(values: Mapping[float, float], bound: float) -> float | None:
    """The largest key whose value is at most ``bound`` (e.g. the largest step size whose mean pixel change stays
    within a bound); None if there is none."""
    ok = [k for k, v in values.items() if v <= bound]
    return max(ok) if ok else None


# --- sheet 4 -------------------------------------------------------------------------------------------------


def accuracy_summary(history: History, last: int = 3) -> dict[str, float]:
    """The numbers an answer about one training run rests on, accuracies in percent.

    Args:
        history: a :func:`helpers.fit` record with test accuracies.
        last: how many final epochs ``late`` averages (steadier than the last epoch alone).

    Returns:
        ``train``/``test``: the last epoch's running training and test accuracy; ``gap``: train minus test
        there, in points (the running training accuracy of the epoch minus the test accuracy after it: the
        difference of the two curves :func:`helpers.plot_accuracy` draws); ``first_gap``: the same in the
        first epoch; ``best``/``best_epoch``: the highest test accuracy and its epoch (1-based, the first if
        tied); ``late``: the mean test accuracy of the last ``last`` epochs; ``test_ahead``: the number of
        epochs whose test accuracy is at least the training accuracy.
    """
    train, test = [100 * a for a in history.train_acc], [100 * a for a in history.test_acc]
    if not test or len(test) != len(train):
        raise ValueError("the history needs one test accuracy per epoch: fit(..., test_loader) with a test loader")
    best = max(range(len(test)), key=test.__getitem__)
    tail = test[-last:]
    return {"train": train[-1], "test": test[-1], "gap": train[-1] - test[-1],
            "first_gap": train[0] - test[0], "best": test[best],
            "best_epoch": best + 1, "late": sum(tail) / len(tail),
            "test_ahead": sum(te >= tr for tr, te in zip(train, test, strict=True))}


def correct_predictions(model: torch.nn.Module, loader: Iterable) -> torch.Tensor:
    """Which of the loader's images ``model`` classifies correctly: ``(N,)`` bool in the loader's order.

    Scored like :func:`helpers.evaluate` (eval mode, no gradients); every module's train/eval flag and every
    parameter's ``requires_grad`` are left as found. ``correct_predictions(m, loader).float().mean()`` is
    ``evaluate(m, loader)``.
    """
    device = model_device(model)
    with frozen_eval(model), torch.no_grad():
        right = [(model(x.to(device)).argmax(1) == y.to(device)).cpu() for x, y in loader]
    if not right:
        raise ValueError("loader yields no batches: give it at least one image")
    return torch.cat(right)


def accuracy_difference(correct_a: torch.Tensor, correct_b: torch.Tensor, *, paired: bool) -> tuple[float, float]:
    """Accuracy a minus accuracy b and the standard error of that difference, in percentage points.

    ``paired=True``: two models on the same images (the same order). The per-image differences ``a_i - b_i``
    (1, 0 or -1) are the sample: the difference is their mean, the standard error their standard deviation over
    ``sqrt(N)`` (``scipy.stats.sem``); an image both get right or both get wrong adds no noise.
    ``paired=False``: two independent sets of images, e.g. one network on its training and on its test images:
    ``sqrt(s_a^2 / N_a + s_b^2 / N_b)`` with each set's sample variance (Welch's standard error).

    Either way it measures how much the difference could change with another draw of images of the same kind,
    not with another training seed.

    Args:
        correct_a, correct_b: ``(N,)`` bool from :func:`correct_predictions`.
        paired: whether the two are the same images.

    Returns:
        ``(difference, standard_error)`` in points.
    """
    a, b = torch.as_tensor(correct_a).flatten().double(), torch.as_tensor(correct_b).flatten().double()
    if min(a.numel(), b.numel()) < 2:
        raise ValueError(f"need at least 2 images on each side, got {a.numel()} and {b.numel()}")
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired=True needs the same images for both, got {a.numel()} and {b.numel()}; "
                             "paired=False for two different sets")
        d = a - b
        return 100 * d.mean().item(), 100 * (d.std() / math.sqrt(d.numel())).item()
    se = math.sqrt(a.var().item() / a.numel() + b.var().item() / b.numel())
    return 100 * (a.mean() - b.mean()).item(), 100 * se


def monte_carlo_p(value: float, baseline: Sequence[float], *, alternative: str = "two-sided") -> float:
    """How unusual ``value`` is among ``baseline``, values of the same statistic from draws without the effect
    (e.g. networks with random weights): the Monte Carlo p-value ``(1 + k) / (n + 1)``, ``k`` the baseline values
    at least as far out as ``value`` (as ``scipy.stats.monte_carlo_test`` computes it).

    If ``value`` comes from the same distribution as the ``n`` baseline draws, ``P(p <= alpha) <= alpha``; the
    smallest possible p is ``1 / (n + 1)`` one-sided and ``2 / (n + 1)`` two-sided (19 draws: 0.05 and 0.1).

    Args:
        value: the statistic of the case under test (e.g. the trained network's correlation).
        baseline: the statistic of each baseline draw.
        alternative: ``"greater"`` (is ``value`` unusually large?), ``"less"`` or ``"two-sided"``.
    """
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    null = torch.as_tensor(baseline, dtype=torch.float64).flatten()
    if null.numel() < 1 or not torch.isfinite(null).all() or not math.isfinite(value):
        raise ValueError(f"need a finite value and at least one finite baseline value, got {value} and {baseline}")
    gamma = abs(value) * 100 * torch.finfo(torch.float64).eps  # ties despite rounding count as "as far out"
    greater = (1 + (null >= value - gamma).sum().item()) / (null.numel() + 1)
    less = (1 + (null <= value + gamma).sum().item()) / (null.numel() + 1)
    return {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]


def map_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of two maps over their pixels, per pair: 1 for maps that rise and fall together.

    Args:
        a, b: ``(N, H, W)`` or ``(H, W)`` of the same shape.

    Returns:
        ``(N,)`` in [-1, 1]; NaN where a map is constant (it has no variation to correlate).
    """
    a, b = _maps(a), _maps(b)
    if a.shape != b.shape:
        raise ValueError(f"maps to correlate must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    da, db = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (da * db).sum(1) / (da.norm(dim=1) * db.norm(dim=1))


def contrast_correlation(maps: torch.Tensor, image: torch.Tensor, window: int = 9) -> torch.Tensor:
    """How edge-like activation maps are: their correlation with the photo's local contrast.

    Each map is resampled bilinearly to the image size (:func:`helpers.upsample_map`) and correlated with
    :func:`helpers.local_contrast` (brightness standard deviation in a ``window`` neighbourhood). Positive: the
    map is high where the photo has edges and texture, low on flat regions.

    Args:
        maps: ``(N, h, w)``, e.g. a layer's mean over channels, one per image.
        image: the ImageNet-normalized images ``(N, 3, H, W)`` the maps were computed from.

    Returns:
        ``(N,)`` correlations.
    """
    contrast = local_contrast(image, window)
    return map_correlation(upsample_map(_maps(maps), tuple(contrast.shape[-2:])), contrast)


def central_box(height: int, width: int | None = None) -> Box:
    """The middle half of each side of a ``height x width`` image: a quarter of its area, centred."""
    width = height if width is None else width
    return Box(height // 4, width // 4, height - height // 4, width - width // 4)


def top_inside(maps: torch.Tensor, box: Box, fraction: float = 0.1) -> torch.Tensor:
    """Share of each map's highest ``fraction`` of pixels that lie inside ``box``.

    A map whose top pixels fall anywhere with equal chance gives about the box's share of the area (0.25 for
    :func:`central_box`); 1 means all its top pixels are inside. Ties at the threshold are broken by pixel order.

    Args:
        maps: ``(N, H, W)`` or ``(H, W)``.
        box: rows ``top .. bottom - 1``, columns ``left .. right - 1`` (e.g. :func:`central_box`).
        fraction: share of pixels in the top set, in (0, 1].

    Returns:
        ``(N,)`` in [0, 1].
    """
    m = _maps(maps)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    h, w = m.shape[1:]
    if not (0 <= box.top < box.bottom <= h and 0 <= box.left < box.right <= w):
        raise ValueError(f"box {tuple(box)} does not lie inside the {h}x{w} map")
    k = max(1, round(fraction * h * w))
    top = m.flatten(1).topk(k, dim=1).indices
    rows, cols = top // w, top % w
    inside = (rows >= box.top) & (rows < box.bottom) & (cols >= box.left) & (cols < box.right)
    return inside.float().mean(1)
