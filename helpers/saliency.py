"""Gradient saliency maps (Simonyan et al., 2014): which pixels the class score is most sensitive to."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import as_batch, check_logits, rgb_fix
from .hooks import capture, explain_small_image, frozen_eval
from .images import denormalize
from .objectives import Objective, Target, class_log_probability, target_indices, target_objective, target_scores


def class_saliency(model: nn.Module, images: torch.Tensor,
                   classes: int | Sequence[int] | torch.Tensor, *,
                   loss: bool = False) -> torch.Tensor:
    """Sheet 4's saliency map (Simonyan et al., 2014): ``max_c |d S_y / d x_c|`` for the class
    ``y`` of each image.

    ``S_y`` is the unnormalized class score (logit); with ``loss=True`` the cross-entropy loss
    of ``y`` instead. The gradient comes from ``torch.autograd.grad`` on a copy of the images,
    so neither the input nor any parameter's ``.grad`` changes; the model runs in eval mode
    and every module's flag is restored afterwards.
    Paper: https://arxiv.org/abs/1312.6034

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits ``(N, classes)``.
        images: ``(N, 3, H, W)`` (or one ``(3, H, W)``).
        classes: one class index for all images, or one per image.
        loss: differentiate ``cross_entropy(S, y)`` instead of ``S_y``.

    Returns:
        ``(N, H, W)``, non-negative, on the images' device.
    """
    x = as_batch(images, model).detach().clone().requires_grad_(True)  # pixels to vary
    with frozen_eval(model), torch.enable_grad():
        logits = check_logits(model(x), len(x))                         # S, (N, classes)
        y = target_indices(classes, len(x), logits.shape[1], x.device)  # (N,) classes
        # loss=True: -log p, the cross-entropy of each class
        scores = -F.log_softmax(logits, 1) if loss else logits
        score = scores.gather(1, y[:, None]).sum()                      # S_y, summed
        # in eval mode image i's score depends on image i alone: one backward pass gives every
        # image its gradient
        (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(dim=1)                                       # max |grad| over RGB


def saliency_map(model: nn.Module, image: torch.Tensor, target: Target, *, loss: bool = False) -> torch.Tensor:
    """Saliency map: max over colour channels of ``|d score / d image|``, for a class or any objective.

    A class index (one for all images or one per image) is :func:`class_saliency`. An objective
    (:mod:`helpers.objectives`, e.g. ``channel_mean("layer3", 7)`` or ``class_logit(243)``) maps the gradient
    of its score instead, under the same rules: a copy of the input, ``torch.autograd.grad``, eval mode restored.

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits ``(N, classes)``.
        image: ``(N, 3, H, W)`` (or ``(3, H, W)``), e.g. from :func:`helpers.load_image`; left unchanged.
        target: one class index for all images, or one per image (list or tensor of length ``N``), or any
            objective: its gradient is mapped.
        loss: differentiate the cross-entropy loss of the target class, ``-log softmax(S)_target``, instead of
            the score (needs a class target); its gradient is ``-(1 - p_t) grad S_t + sum_{c != t} p_c grad S_c``,
            so it depends on every class's score (and is nearly zero when the model is sure of the target).

    Returns:
        Tensor ``(N, H, W)`` (``(1, H, W)`` for a single image), non-negative, on the image's device.

    Raises:
        ValueError: wrong image shape, a target out of range, or a target count that is not 1 or ``N``.
    """
    x = as_batch(image, model)
    if not isinstance(target, Objective):
        try:
            return class_saliency(model, x, target, loss=loss)
        except RuntimeError as error:  # an image too small for the model: the error with the smallest size
            explain_small_image(model, None, x, error)
            raise
    n = x.shape[0]
    objective = target_objective(target, n)
    if loss and objective.classes is None:
        raise ValueError(f"loss=True is the cross-entropy of a class: give a class index, not {objective!r}")
    x = x.detach().clone().requires_grad_(True)
    with frozen_eval(model), capture(model, objective) as forward, torch.enable_grad():
        acts = forward(x)
        if loss:  # per-image cross-entropy of the target class: minus its log-probability
            selected = -target_scores(class_log_probability(objective.classes), acts, n).sum()
        else:
            selected = target_scores(objective, acts, n).sum()
        (grad,) = torch.autograd.grad(selected, x)
    return grad.abs().amax(dim=1)


# --- comparing maps: numbers a notebook's wording can rest on ----------------------------------------------


def _maps(m: torch.Tensor) -> torch.Tensor:
    m = m.unsqueeze(0) if m.dim() == 2 else m
    if m.dim() != 3:
        raise ValueError(f"expected maps (N, H, W) or one map (H, W), got shape {tuple(m.shape)}")
    return m.float()


def centre_of_mass(maps: torch.Tensor) -> torch.Tensor:
    """Centre of mass ``(row, col)`` in pixels of each non-negative map (e.g. saliency or Grad-CAM).

    Args:
        maps: ``(N, H, W)`` or ``(H, W)``, non-negative.

    Returns:
        ``(N, 2)`` float, on the maps' device; NaN for an all-zero map (it has no centre).
    """
    m = _maps(maps)
    if (m < 0).any():
        raise ValueError("centre_of_mass needs non-negative maps (e.g. |gradient| or a ReLU'd CAM)")
    rows = torch.arange(m.shape[1], dtype=m.dtype, device=m.device)
    cols = torch.arange(m.shape[2], dtype=m.dtype, device=m.device)
    total = m.sum((1, 2))
    return torch.stack([(m.sum(2) * rows).sum(1) / total, (m.sum(1) * cols).sum(1) / total], 1)


def top_overlap(a: torch.Tensor, b: torch.Tensor, fraction: float = 0.1) -> torch.Tensor:
    """Intersection over union of the ``fraction`` highest pixels of map ``a`` and of map ``b``, per pair.

    1 when both maps rank the same pixels at the top, about ``fraction / (2 - fraction)`` for unrelated maps.
    Ties at the threshold are broken by pixel order, so each top set holds exactly ``round(fraction * H * W)``.
    A constant map (e.g. an all-zero Grad-CAM: no positive evidence) has no top pixels: its pairs give NaN.

    Args:
        a, b: maps ``(N, H, W)`` or ``(H, W)`` of the same shape.
        fraction: share of pixels in each top set, in (0, 1].

    Returns:
        ``(N,)`` in [0, 1] (NaN for a constant map), on the maps' device.
    """
    a, b = _maps(a), _maps(b)
    if a.shape != b.shape:
        raise ValueError(f"maps to compare must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, round(fraction * a[0].numel()))

    def top(m: torch.Tensor) -> torch.Tensor:
        flat = m.flatten(1)
        return torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1).indices, True)

    ta, tb = top(a), top(b)
    iou = (ta & tb).sum(1) / (ta | tb).sum(1)
    constant = [(m.flatten(1).amax(1) == m.flatten(1).amin(1)) for m in (a, b)]
    return torch.where(constant[0] | constant[1], torch.full_like(iou, float("nan")), iou)


def local_contrast(image: torch.Tensor, window: int = 9) -> torch.Tensor:
    """Standard deviation of the brightness in a ``window x window`` neighbourhood of every pixel.

    The brightness is the mean of the de-normalized RGB values (in [0, 1]); the border is reflected, so a
    uniform region gives exactly 0 everywhere. The pixels with the lowest values are the flat, textureless
    parts of a photo (sky, wall, studio background).

    Args:
        image: ImageNet-normalized ``(N, 3, H, W)`` or ``(3, H, W)`` (e.g. from :func:`helpers.load_image`).
        window: odd side of the neighbourhood, smaller than the image.

    Returns:
        ``(N, H, W)`` non-negative, on the image's device.
    """
    x = as_batch(image)
    if x.shape[1] != 3:
        raise ValueError(f"image must be (N, 3, H, W) or (3, H, W), got shape {tuple(image.shape)}; "
                         + rgb_fix(x.shape[1]))
    if window < 1 or window % 2 == 0 or window > min(x.shape[2:]):
        raise ValueError(f"window must be an odd size between 1 and the image side, got {window}")
    gray = denormalize(x.detach().float()).mean(1, keepdim=True)
    pad = window // 2
    padded = torch.nn.functional.pad(gray, (pad, pad, pad, pad), mode="reflect") if pad else gray
    mean = torch.nn.functional.avg_pool2d(padded, window, stride=1)
    square = torch.nn.functional.avg_pool2d(padded**2, window, stride=1)
    return (square - mean**2).clamp(min=0).sqrt()[:, 0]
