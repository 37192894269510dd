"""Gradient saliency maps (Simonyan et al., 2014): which pixels the class score is most sensitive to."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def check_logits(scores: torch.Tensor, n: int) -> torch.Tensor:
    """``scores`` when it is a logits tensor ``(n, classes)``, else ``ValueError`` naming its shape."""
    if scores.dim() != 2 or scores.shape[0] != n:
        raise ValueError(f"the model must return logits (N, classes), got shape {tuple(scores.shape)}")
    return scores


def target_indices(target: int | Sequence[int] | torch.Tensor, n: int, classes: int,
                   device: torch.device) -> torch.Tensor:
    """``target`` (one class index for all ``n`` images, or one per image) as a long tensor ``(n,)`` on ``device``;
    ``ValueError`` for a float/bool target, a wrong count, or an index outside ``0 .. classes - 1``."""
    t = torch.as_tensor(target, device=device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"target must be a class index or one index per image, got {target!r}")
    t = t.long().flatten()
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"got {t.numel()} targets for a batch of {n} images; pass one int or one per image")
    if (t < 0).any() or (t >= classes).any():
        raise ValueError(f"target {t.tolist()} out of range: the model has {classes} classes (0..{classes - 1})")
    return t


def saliency_map(model: nn.Module, image: torch.Tensor, target: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Saliency map: max over colour channels of ``|d S_target / d image|``, ``S`` the unnormalized class score.

    The gradient of the logit (not the softmax probability, which also depends on every other class)
    is taken with ``torch.autograd.grad`` with respect to a copy of the input, so parameters' ``.grad`` are
    never touched. The model runs in eval mode for the computation; every module's train/eval flag is
    restored afterwards, also on errors. Paper: https://arxiv.org/abs/1312.6034

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits ``(N, classes)``.
        image: ``(N, 3, H, W)`` (or ``(3, H, W)``), e.g. from :func:`helpers.load_image`; left unchanged.
        target: one class index for all images, or one per image (list or tensor of length ``N``).

    Returns:
        Tensor ``(N, H, W)`` (``(1, H, W)`` for a single image), non-negative, on the image's device.

    Raises:
        ValueError: wrong image shape, a target out of range, or a target count that is not 1 or ``N``.
    """
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise ValueError(f"image must be (N, C, H, W) or (C, H, W), got shape {tuple(image.shape)}")
    x = image.detach().clone().requires_grad_(True)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.enable_grad():
            scores = check_logits(model(x), x.shape[0])
            t = target_indices(target, x.shape[0], scores.shape[1], scores.device)
            # In eval mode every image's score depends on that image alone, so one backward pass of the sum
            # gives each image its own gradient.
            selected = scores.gather(1, t[:, None]).sum()
            (grad,) = torch.autograd.grad(selected, x)
    finally:
        for module, mode in modes.items():
            module.training = mode
    return grad.abs().amax(dim=1)
