"""Saliency by occlusion (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901): cover part of the image
with a grey patch and watch the probability of the class drop."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import as_batch, int_pair, positive_int
from ..config import progress
from ..hooks import capture, frozen_eval
from ..objectives import Target, class_probability, target_objective, target_scores

MEAN_COLOUR = 0.0
"""The default baseline of occlusion and the deletion curve: 0 in the normalized space, the dataset's mean colour."""


def _positions(size: int, patch: int, stride: int) -> list[int]:
    """Top (or left) coordinates of the patches along one side: every ``stride`` pixels from 0, plus one patch
    flush with the far border when the stride does not reach it, so every pixel is covered."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occlusion_map(model: nn.Module, image: torch.Tensor, target: Target, *, patch: int | tuple[int, int] = 16,
              stride: int | tuple[int, int] = 8, baseline: float | torch.Tensor = MEAN_COLOUR, batch_size: int = 64,
              show_progress: bool | None = None) -> torch.Tensor:
    """Occlusion map: how much the target class probability (or objective) drops when a patch covers each pixel.

    Every patch position gives one occluded copy of the image (the patch set to ``baseline``, captum's word for
    the reference input, in all channels);
    the copies run through the model in batches of ``batch_size`` without gradients. The drop
    ``p(target | image) - p(target | occluded)`` of a position is credited to every pixel under its patch,
    and each pixel gets the mean over the patches covering it (the same map as captum's ``Occlusion`` with
    a softmax on the model). Positive: covering it hurts the class; negative: covering it helps.
    Computed in eval mode with frozen weights; the model's flags are restored afterwards, also on errors.

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits ``(N, classes)``.
        image: ``(N, 3, H, W)`` or ``(3, H, W)``, normalized; left unchanged.
        target: class index, one for all images or one per image; or an objective (:mod:`helpers.objectives`)
            for all images, whose value (not a probability) then drops.
        patch: patch side in pixels, or ``(height, width)``.
        stride: step between patch positions in pixels, or ``(dy, dx)``; the last patch of each row and
            column is placed flush with the border, so every pixel is covered.
        baseline: value of the patch in the NORMALIZED space (unlike :func:`helpers.render`'s ``fill``, a pixel
            value): 0 is the dataset mean (ImageNet's mean colour); a ``(3,)`` or ``(3, 1, 1)`` tensor gives one
            value per channel.
        batch_size: occluded copies per forward pass.
        show_progress: progress bar over the batches; None follows ``helpers.config.progress_enabled()``.

    Returns:
        Tensor ``(N, H, W)`` (``(1, H, W)`` for a single image) of probability drops, on the image's device.

    Raises:
        ValueError: bad image shape, target out of range, patch larger than the image, bad stride/batch size.
    """
    x = as_batch(image, model).detach()
    n, _, height, width = x.shape
    objective = target_objective(target, n)
    if objective.classes is None and objective.batch is not None:
        raise ValueError(f"{objective!r} scores each image differently; occlusion runs the copies of one image at a "
                         "time: give an objective for all images, or call occlusion_map per image")
    ph, pw = int_pair(patch, "patch")
    sy, sx = int_pair(stride, "stride")
    if ph > height or pw > width:
        raise ValueError(f"patch {ph}x{pw} is larger than the image {height}x{width}; choose a smaller patch")
    positive_int(batch_size, "batch_size")
    value = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if value.dim() == 1 and value.numel() == x.shape[1]:
        value = value.view(-1, 1, 1)  # one value per channel
    if value.numel() not in (1, x.shape[1]):
        raise ValueError(f"baseline must be one normalized value or one per channel ({x.shape[1]}), got shape "
                         f"{tuple(value.shape)}")
    positions = [(top, left) for top in _positions(height, ph, sy) for left in _positions(width, pw, sx)]
    chunks = [positions[i:i + batch_size] for i in range(0, len(positions), batch_size)]

    # How many patches cover each pixel (the same for every image).
    counts = torch.zeros(height, width, dtype=x.dtype, device=x.device)
    for top, left in positions:
        counts[top:top + ph, left:left + pw] += 1

    drops = torch.zeros(n, height, width, dtype=x.dtype, device=x.device)
    if objective.classes is not None:  # a class: its probability (image i's copies all score its class)
        classes = objective.classes
        objective = class_probability(classes)
        per_image = [class_probability(c) for c in (classes * n if len(classes) == 1 else classes)]
    else:  # any other objective: its value
        per_image = [objective] * n
    with frozen_eval(model), torch.no_grad(), capture(model, objective) as forward:
        base = target_scores(objective, forward(x), n)
        bar = progress(total=n * len(chunks), desc="occlusion", leave=False, enabled=show_progress)
        try:
            for i in range(n):
                for chunk in chunks:
                    batch = x[i].expand(len(chunk), -1, -1, -1).clone()
                    for k, (top, left) in enumerate(chunk):
                        batch[k, :, top:top + ph, left:left + pw] = value
                    prob = per_image[i](forward(batch))
                    for k, (top, left) in enumerate(chunk):
                        drops[i, top:top + ph, left:left + pw] += base[i] - prob[k]
                    bar.update(1)
        finally:
            bar.close()
    return drops / counts

