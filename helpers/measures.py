"""The statistics the sheets' answers rest on, as small tested functions, and the formatting of their numbers.

Every image argument is ImageNet-normalized ``(N, 3, H, W)`` (like :func:`helpers.load_image`); the measures work
on the displayable pixel values in ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from .images import denormalize

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
    """Size of the motif: the distance (px) at which the radially averaged autocorrelation of each image's grey
    values falls to half its peak (linearly interpolated), without a border band of ``margin`` px. ``(N,)``; NaN for
    a flat image (no motif), ``side / 2`` when it never falls to half. White noise gives < 1 px."""
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
