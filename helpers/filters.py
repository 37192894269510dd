"""Filters as images: the weights of a convolution mapped to [0, 1] by a stated range mapping.

A first-layer filter ``(3, k, k)`` is an RGB picture of what it responds to; a deeper filter ``(C_in, k, k)``
is ``C_in`` grayscale tiles, one per input channel. Weights are signed and small, so the picture depends
on the range mapping, which is always explicit here (course notes 1.3-1.5):

- ``"symmetric"``: ``w / (2 s) + 1/2`` with one shared scale ``s = max |w|`` over all filters shown (or a
  given ``s``): 0 is mid-grey, ``-s`` black, ``+s`` white, and tiles are comparable with each other.
- ``"minmax"``: each filter's own minimum to 0 and maximum to 1 (the popular mapping): every filter
  fills the full range, so contrast between filters means nothing and 0 lands anywhere. The stretch is per
  filter, not per tile: the ``C_in`` grayscale tiles of one deeper filter share its scale.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import first_conv
from .hooks import get_layer, layer_names

MAPPINGS = ("symmetric", "minmax")


def filter_weights(model: nn.Module, layer: str | None = None) -> torch.Tensor:
    """The weights of a convolution, detached and copied.

    Args:
        model: any ``nn.Module``.
        layer: dotted name of an ``nn.Conv2d`` (e.g. ``"features.0"``, ``"layer1.0.conv1"``); None = the
            first convolution of the model (``"features.0"`` of VGG16, ``"conv1"`` of ResNet-18).

    Returns:
        Tensor ``(C_out, C_in / groups, k_h, k_w)`` on the model's device.

    Raises:
        ValueError: unknown layer (with close names) or a layer that is not a convolution (with the valid ones).
    """
    name = first_conv(model) if layer is None else layer
    if name is None:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer, so there are no filters to show")
    module = get_layer(model, name)
    if not isinstance(module, nn.Conv2d):
        convs = [n for n in layer_names(model) if isinstance(model.get_submodule(n), nn.Conv2d)]
        raise ValueError(f"layer {name!r} is a {type(module).__name__}, not a Conv2d; convolutions of this "
                         f"model: {', '.join(convs[:8])}{' ...' if len(convs) > 8 else ''}")
    return module.weight.detach().clone()


def symmetric_scale(weights: torch.Tensor) -> float:
    """The shared scale ``s = max |w|`` of the symmetric mapping (1.0 for all-zero weights)."""
    s = float(weights.detach().abs().max())
    return s if s > 0 else 1.0


def range_map(weights: torch.Tensor, mapping: str = "symmetric", *, scale: float | None = None) -> torch.Tensor:
    """Map filter weights to [0, 1] for display.

    Args:
        weights: ``(C_out, ...)``, one filter per row.
        mapping: ``"symmetric"`` (``w / (2 s) + 0.5`` with one shared ``s``; 0 is mid-grey) or ``"minmax"``
            (per filter, i.e. per row ``weights[i]`` with all its input channels: its minimum to 0, its
            maximum to 1; a constant filter becomes 0.5).
        scale: ``s`` for the symmetric mapping (default :func:`symmetric_scale` of ``weights``); values
            beyond ``±s`` are clipped. Use one ``s`` for several layers to compare them.

    Returns:
        Tensor of the same shape in [0, 1].
    """
    w = weights.detach().float()
    if mapping == "symmetric":
        s = symmetric_scale(w) if scale is None else float(scale)
        if not s > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        return (w / (2 * s) + 0.5).clamp(0.0, 1.0)
    if mapping == "minmax":
        if scale is not None:
            raise ValueError("scale is only used by mapping='symmetric'; the minmax mapping scales each filter itself")
        flat = w.reshape(w.shape[0], -1)
        low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
        span = high - low
        mapped = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(w.dtype).tiny), 0.5)
        return mapped.reshape(w.shape)
    raise ValueError(f"unknown mapping {mapping!r}; choose one of {', '.join(MAPPINGS)}")


def filter_tiles(model: nn.Module, layer: str | None = None, *, mapping: str = "symmetric",
                 scale: float | None = None) -> torch.Tensor:
    """The filters of a convolution as displayable tiles (course notes 1.4-1.5).

    For the first layer (3 input channels) each filter is one RGB tile, channel order as the network's
    input (R, G, B); for a deeper layer each of the ``C_in`` channels is one grayscale tile.

    Args:
        model: any ``nn.Module``; left as found.
        layer: dotted name of an ``nn.Conv2d``; None = the first convolution.
        mapping: ``"symmetric"`` or ``"minmax"``, see :func:`range_map`.
        scale: shared scale of the symmetric mapping (default ``max |w|`` of this layer).

    Returns:
        Tensor ``(C_out, C_in, k_h, k_w)`` in [0, 1] (``(C_out, 3, k, k)`` RGB tiles for the first layer).
    """
    return range_map(filter_weights(model, layer), mapping, scale=scale)
