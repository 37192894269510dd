"""Grad-CAM and guided Grad-CAM (Selvaraju et al., https://arxiv.org/abs/1610.02391).

Grad-CAM weighs each channel ``k`` of a late layer's activation ``A`` by the spatial mean of the class score's
gradient, ``w_k = mean_ij dS/dA_kij``, and keeps the positive evidence: ``relu(sum_k w_k A_k)``. Guided
Grad-CAM multiplies the (upsampled) map with guided backpropagation, pixel by pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import as_batch, last_conv, not_a_channel_layer
from .guided import guided_backprop
from .hooks import capture, frozen_eval, get_layer
from .objectives import Target, target_objective, target_scores


def default_cam_layer(model: nn.Module) -> str:
    """The layer Grad-CAM uses when none is given: the last spatial feature map before global pooling.

    ``"layer4"`` for ResNets; for VGG-like models with a ``features`` ``nn.Sequential``, its last ``nn.ReLU``
    (``"features.29"``, the rectified conv5_3, 14x14 at 224 px, for VGG16); otherwise the model's last
    ``nn.Conv2d``.

    Raises:
        ValueError: the model has none of these; pass ``layer=`` (see :func:`helpers.layer_names`).
    """
    if isinstance(getattr(model, "layer4", None), nn.Module):
        return "layer4"
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        relus = [name for name, m in features.named_modules() if isinstance(m, nn.ReLU)]
        if relus:
            return f"features.{relus[-1]}"
    conv = last_conv(model)
    if conv is not None:
        return conv
    raise ValueError(f"{type(model).__name__} has no layer4, features or Conv2d; pass layer='...' "
                     "(valid names: helpers.layer_names(model))")


def _upsample(maps: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    maps = maps[:, None]
    if mode == "nearest":
        return F.interpolate(maps, size=size, mode="nearest")[:, 0]
    return F.interpolate(maps, size=size, mode=mode, align_corners=False)[:, 0]


def grad_cam(model: nn.Module, image: torch.Tensor, target: Target, *, layer: str | None = None,
             upsample: str = "bilinear", normalize: bool = True) -> torch.Tensor:
    """Grad-CAM map of class ``target`` (or of any objective), upsampled to the image size.

    The weighted sum over channels starts from zeros (not ones), so a channel with zero weight adds nothing;
    after the ReLU the map is upsampled and, with ``normalize``, divided by its maximum per image. A map
    without positive evidence (all zeros) stays all zeros instead of becoming NaN. Computed in eval mode with
    frozen weights; the model's flags, weights, ``.grad`` and hooks are left as found, also on errors.
    Paper: https://arxiv.org/abs/1610.02391

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits ``(N, classes)``.
        image: ``(N, 3, H, W)`` or ``(3, H, W)``, normalized; left unchanged.
        target: class index, one for all images or one per image, or an objective (:mod:`helpers.objectives`)
            of the logits or of layers after ``layer``.
        layer: dotted layer name whose output ``(N, C, h, w)`` is used; None means
            :func:`default_cam_layer` (``"layer4"`` for ResNet-18, ``"features.29"`` for VGG16).
        upsample: ``"bilinear"`` (default), ``"bicubic"`` or ``"nearest"``.
        normalize: divide each map by its maximum (values in [0, 1]); False keeps the raw ``relu`` values.

    Returns:
        Tensor ``(N, H, W)`` (``(1, H, W)`` for a single image), non-negative, on the image's device.

    Raises:
        ValueError: bad image shape, target out of range, unknown layer (with close names), bad ``upsample``.
    """
    if upsample not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"upsample must be 'bilinear', 'bicubic' or 'nearest', got {upsample!r}")
    x = as_batch(image, model).detach()
    objective = target_objective(target, x.shape[0])
    name = default_cam_layer(model) if layer is None else layer
    get_layer(model, name)  # ValueError listing close names
    # the layer's output A comes from the objective's own pass (first call stands), as the tensor the rest of
    # the pass is computed from: dS/dA by autograd
    with frozen_eval(model), capture(model, objective, differentiable=name) as forward, torch.enable_grad():
        x = x.clone().requires_grad_(True)  # so that the layer's output is part of a graph
        acts = forward(x)
        if name not in acts:  # the pass stopped at the objective's layers before reaching `layer`
            raise ValueError(f"layer {name!r} comes after the layers {objective.layers} of {objective!r}: "
                             "Grad-CAM explains the logits or layers after `layer`; pick an earlier layer")
        act = acts[name]
        if not isinstance(act, torch.Tensor) or act.dim() != 4:  # Grad-CAM weighs channel maps (N, C, h, w)
            raise not_a_channel_layer(model, name, tuple(act.shape) if isinstance(act, torch.Tensor)
                                      else (type(act).__name__,))
        score = target_scores(objective, acts, x.shape[0])
        (grad,) = torch.autograd.grad(score.sum(), act, allow_unused=True)
    if grad is None:
        raise ValueError(f"{objective!r} does not depend on layer {name!r}: Grad-CAM explains the logits or layers "
                         f"after `layer`; pick a layer before {list(objective.layers)}")
    weights = grad.mean(dim=(2, 3))  # (N, C): global-average-pooled gradients
    cam = torch.relu(torch.einsum("nc,nchw->nhw", weights, act.detach()))  # a sum: starts from zeros
    cam = _upsample(cam, tuple(x.shape[2:]), upsample)
    if normalize:
        peak = cam.flatten(1).amax(1).view(-1, 1, 1)
        cam = torch.where(peak > 0, cam / peak.clamp(min=torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
    return cam


def guided_grad_cam(model: nn.Module, image: torch.Tensor, target: Target, *, layer: str | None = None,
                    upsample: str = "bilinear", normalize: bool = True) -> torch.Tensor:
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map, pixel by pixel.

    Same arguments as :func:`grad_cam`; ``normalize`` applies to the Grad-CAM factor. Coverage of
    :func:`helpers.guided_backprop` applies (``nn.ReLU`` modules, in-place or reused; not functional
    ``F.relu``). Paper: https://arxiv.org/abs/1610.02391

    Returns:
        Tensor of the image's shape ``(N, 3, H, W)`` (or ``(3, H, W)``), on the image's device.
    """
    cam = grad_cam(model, image, target, layer=layer, upsample=upsample, normalize=normalize)
    guided = guided_backprop(model, image, target)
    return (as_batch(guided) * cam[:, None]).reshape(guided.shape)
