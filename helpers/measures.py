"""Measures the sheets' answers rest on: small, tested statistics of training runs and maps."""

from __future__ import annotations

import torch

from .activations import upsample_map
from .receptive import Box
from .saliency import _maps, local_contrast
from .training import History

# --- sheet 4


def accuracy_summary(history: History, last: int = 3) -> dict[str, float]:
    """The numbers an answer about one training run rests on, accuracies in percent.

    Args:
        history: a :func:`helpers.fit` record with test accuracies.
        last: how many final epochs ``late`` averages (steadier than the last epoch alone).

    Returns:
        ``train``/``test``: the last epoch's running training and test accuracy; ``gap``: train minus test
        there, in points; ``best``/``best_epoch``: the highest test accuracy and its epoch (1-based, the first
        if tied); ``late``: the mean test accuracy of the last ``last`` epochs; ``test_ahead``: the number of
        epochs whose test accuracy is at least the training accuracy.
    """
    train, test = [100 * a for a in history.train_acc], [100 * a for a in history.test_acc]
    if not test or len(test) != len(train):
        raise ValueError("the history needs one test accuracy per epoch: fit(..., test_loader) with a test loader")
    best = max(range(len(test)), key=test.__getitem__)
    tail = test[-last:]
    return {"train": train[-1], "test": test[-1], "gap": train[-1] - test[-1], "best": test[best],
            "best_epoch": best + 1, "late": sum(tail) / len(tail),
            "test_ahead": sum(te >= tr for tr, te in zip(train, test, strict=True))}


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
