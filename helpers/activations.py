"""Activation maps made displayable: PCA over channels, channel mean, and upsampling to the image size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import as_batch, not_a_channel_layer
from .hooks import TruncatedForward, frozen_eval, model_device


def _check_maps(act: torch.Tensor) -> None:
    if act.dim() != 4:
        raise ValueError(f"expected activations (N, C, H, W), got shape {tuple(act.shape)}; "
                         "add a batch axis with act.unsqueeze(0)")


def _principal_axes(act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred pixel-by-channel matrix ``(N*H*W, C)``, its right singular vectors ``(C, r)`` and values ``(r,)``."""
    _check_maps(act)
    n, c, h, w = act.shape
    rows = act.detach().permute(0, 2, 3, 1).reshape(-1, c).double()
    rows = rows - rows.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(rows, full_matrices=False)
    axes = vh.T
    # Sign fix: the loading with the largest magnitude of every axis is positive (SVD's sign is arbitrary).
    pivot = axes.abs().argmax(0)
    signs = torch.sign(axes[pivot, torch.arange(axes.shape[1], device=axes.device)])
    signs[signs == 0] = 1
    return rows, axes * signs, s


def activation_pca(act: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Project activation maps onto their first ``k`` principal components over channels.

    Every spatial position of every image is one sample with ``C`` features; the samples are centred
    (one mean over the whole batch, so images stay comparable) and projected onto the top-``k`` right
    singular vectors. Each component's sign is fixed so that its largest channel loading is positive,
    which makes the result a deterministic function of ``act``.

    Args:
        act: activations ``(N, C, H, W)``.
        k: number of components, ``1 <= k <= C`` (3 for an RGB picture, 1 for a heat map).

    Returns:
        Tensor ``(N, k, H, W)`` in the dtype and on the device of ``act``; component 0 has the largest variance.
    """
    _check_maps(act)
    n, c, h, w = act.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= c:
        raise ValueError(f"k must be an integer between 1 and the number of channels ({c}), got {k!r}")
    rows, axes, _ = _principal_axes(act)
    projected = rows @ axes[:, :k]
    return projected.reshape(n, h, w, k).permute(0, 3, 1, 2).to(act.dtype).contiguous()


def explained_variance_ratio(act: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Fraction of the activations' variance (over positions, as in :func:`activation_pca`) per component.

    Args:
        act: activations ``(N, C, H, W)``.
        k: how many leading components to return (default all).

    Returns:
        Tensor ``(k,)`` of float64 ratios, decreasing, summing to 1 over all components.
    """
    _, _, s = _principal_axes(act)
    var = s**2
    ratio = var / var.sum().clamp_min(torch.finfo(var.dtype).tiny)
    return ratio if k is None else ratio[:k]


def mean_over_channels(act: torch.Tensor) -> torch.Tensor:
    """Mean over channels: ``(N, C, H, W)`` -> ``(N, H, W)``, a map of where the layer as a whole responds.
    (Not :func:`helpers.objectives.channel_mean`, the mean over positions of one channel, an objective.)"""
    _check_maps(act)
    return act.detach().mean(1)


def upsample_map(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resample maps to the image size with bilinear interpolation (``align_corners=False``).

    Args:
        maps: ``(N, h, w)`` or ``(N, C, h, w)``.
        size: target ``(H, W)``, or one int for a square.

    Returns:
        ``(N, H, W)`` or ``(N, C, H, W)`` on the same device (float32 for integer input).
    """
    if maps.dim() not in (3, 4):
        raise ValueError(f"expected maps (N, h, w) or (N, C, h, w), got shape {tuple(maps.shape)}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    x = maps.detach()
    x = x.unsqueeze(1) if maps.dim() == 3 else x
    x = x if x.is_floating_point() else x.float()
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return out.squeeze(1) if maps.dim() == 3 else out


# --- gallery: activation grids of any layer, and their PCA as an RGB picture -------------------------------


def activation_grid(model: torch.nn.Module, image: torch.Tensor, layer: str) -> torch.Tensor:
    """The activation tensor of one layer for a batch of images (course notes 1.6): each of its ``C``
    channels is one grayscale map, ready for :func:`helpers.plot_channels`.

    Only the layers up to ``layer`` run, without gradients, in eval mode; the model is left as found. A
    module called twice in one pass (ResNet's shared ReLU) gives its first call's output.

    Args:
        model: a CNN taking ImageNet-normalized images.
        image: ``(N, 3, H, W)`` (or ``(3, H, W)``) normalized images; not modified.
        layer: dotted module name, e.g. ``"features.28"`` or ``"layer3"``.

    Returns:
        Tensor ``(N, C, h, w)`` on the image's device.

    Raises:
        ValueError: unknown layer (with close names), wrong image shape, or a layer without a map.
    """
    x = as_batch(image, model)  # a grey or RGBA tensor: ValueError with the conversion
    if x.shape[1] != 3:
        raise ValueError(f"image must be (N, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        act = forward(x.to(model_device(model)))[layer]
    if act.dim() != 4:
        raise not_a_channel_layer(model, layer, tuple(act.shape))
    return act.detach().to(image.device, copy=True)


def pca_rgb(act: torch.Tensor, *, scale: torch.Tensor | None = None) -> torch.Tensor:
    """The first three principal components of activations (:func:`activation_pca`) as an RGB picture.

    Each component ``c`` is mapped symmetrically, ``p_c / (2 s_c) + 0.5`` with ``s_c = max |p_c|`` over the
    whole batch: mid-grey is the mean activation, and brightness is comparable across the images.

    Args:
        act: activations ``(N, C, H, W)`` with ``C >= 3``.
        scale: ``(3,)`` scales ``s_c`` to use instead (e.g. those of another batch).

    Returns:
        Tensor ``(N, 3, H, W)`` in [0, 1] (R = component 0), same device and dtype as ``act``.
    """
    pc = activation_pca(act, k=3)
    if scale is None:
        scale = pc.abs().amax(dim=(0, 2, 3))
    scale = torch.as_tensor(scale, dtype=pc.dtype, device=pc.device).reshape(1, 3, 1, 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (pc / (2 * scale) + 0.5).clamp(0.0, 1.0)
