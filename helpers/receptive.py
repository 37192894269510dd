"""Convolution geometry: output sizes, receptive fields, and an empirical check of both by input gradients."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Length of a convolution's (or pooling's) output along one axis.

    ``floor((n + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1``: the padded input has
    ``n + 2p`` positions, a dilated kernel covers ``d(k - 1) + 1`` of them, and the window can start at
    every ``stride``-th position from which it still fits.

    Args:
        n: input length (pixels along one axis).
        kernel: kernel size.
        stride: step between windows.
        padding: zeros added at each end.
        dilation: spacing between kernel taps.

    Returns:
        The output length, at least 1.

    Raises:
        ValueError: a non-positive size, a negative padding, or a (dilated) kernel wider than the padded input.
    """
    _positive_int(n, "n")
    _positive_int(kernel, "kernel")
    _positive_int(stride, "stride")
    _positive_int(padding, "padding", minimum=0)
    _positive_int(dilation, "dilation")
    span = dilation * (kernel - 1) + 1
    if span > n + 2 * padding:
        raise ValueError(
            f"a kernel spanning {span} pixels (kernel {kernel}, dilation {dilation}) does not fit into an input "
            f"of {n} pixels with padding {padding}; use a smaller kernel or more padding")
    return (n + 2 * padding - span) // stride + 1


def _layer(spec: Sequence[int]) -> tuple[int, int, int]:
    if not isinstance(spec, Sequence) or len(spec) not in (2, 3):
        raise ValueError(f"a layer is a (kernel, stride) or (kernel, stride, dilation) tuple, got {spec!r}")
    kernel = _positive_int(spec[0], "kernel")
    stride = _positive_int(spec[1], "stride")
    dilation = _positive_int(spec[2], "dilation") if len(spec) == 3 else 1
    return kernel, stride, dilation


def receptive_field(layers: Iterable[Sequence[int]]) -> int:
    """Receptive field (in input pixels, along one axis) of one neuron after a stack of conv/pool layers.

    Each layer widens the field by ``dilation * (kernel - 1)`` steps of the layer's input grid, and one step
    there is the product of all earlier strides in input pixels:
    ``r = 1 + sum_l d_l (k_l - 1) * prod_{i<l} s_i``. Padding does not change the size.

    Args:
        layers: ``(kernel, stride)`` or ``(kernel, stride, dilation)`` per layer, input side first;
            a max-pooling layer is ``(size, stride)`` like a convolution.

    Returns:
        The receptive field size in pixels (1 for an empty stack).

    Raises:
        ValueError: a malformed layer tuple.
    """
    size, jump = 1, 1
    for spec in layers:
        kernel, stride, dilation = _layer(spec)
        size += dilation * (kernel - 1) * jump
        jump *= stride
    return size


class Box(NamedTuple):
    """A rectangle of pixels: rows ``top:bottom`` and columns ``left:right`` (Python slice convention)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def input_gradient(model: nn.Module, input_shape: Sequence[int], position: tuple[int, int], *,
                   channel: int = 0, x: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient of one output neuron with respect to the input, as a map ``(H, W)`` (abs, summed over channels).

    The neuron is ``model(x)[0, channel, row, col]`` for ``position = (row, col)``. The model runs in eval
    mode and is left exactly as found (weights, ``.grad``, ``requires_grad``, train/eval flags).

    Args:
        model: maps ``(1, C, H, W)`` to ``(1, C', H', W')``.
        input_shape: ``(C, H, W)`` or ``(1, C, H, W)``.
        position: ``(row, col)`` of the neuron in the output map.
        channel: output channel of the neuron.
        x: the input to differentiate at; default all ones (with positive weights every path then counts).

    Returns:
        Tensor ``(H, W)``, non-zero exactly where the input influences the neuron at ``x``.
    """
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"input_shape must be (C, H, W) or (1, C, H, W), got {tuple(input_shape)}")
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.ones(shape, device=device) if x is None else x.detach().clone().reshape(shape)
    x.requires_grad_(True)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.enable_grad():
            out = model(x)
            if out.dim() != 4:
                raise ValueError(f"the model must return a (1, C, H, W) map, got shape {tuple(out.shape)}")
            row, col = position
            if not (0 <= channel < out.shape[1] and 0 <= row < out.shape[2] and 0 <= col < out.shape[3]):
                raise ValueError(f"neuron (channel {channel}, row {row}, col {col}) is outside the output "
                                 f"map of shape {tuple(out.shape[1:])}")
            (grad,) = torch.autograd.grad(out[0, channel, row, col], x)
    finally:
        for module, mode in modes.items():
            module.training = mode
    return grad[0].abs().sum(0)


def input_gradient_support(model: nn.Module, input_shape: Sequence[int], position: tuple[int, int], *,
                           channel: int = 0, x: torch.Tensor | None = None) -> Box:
    """The smallest box holding every input pixel with a non-zero gradient for one output neuron.

    For a stack of convolutions with positive weights (so no path cancels and no ReLU is off), its height
    and width equal :func:`receptive_field` of the stack, wherever the window lies fully inside the input.
    See :func:`input_gradient` for the arguments.

    Returns:
        :class:`Box` in input pixel coordinates.

    Raises:
        ValueError: the gradient is zero everywhere (no pixel influences the neuron at ``x``).
    """
    grad = input_gradient(model, input_shape, position, channel=channel, x=x)
    rows = torch.nonzero(grad.sum(1)).flatten()
    cols = torch.nonzero(grad.sum(0)).flatten()
    if len(rows) == 0:
        raise ValueError("the input gradient is zero everywhere: the neuron does not depend on the input at x "
                         "(a ReLU is off or paths cancel); try positive weights or another x")
    return Box(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
