"""Convolution geometry: output sizes, receptive fields, and an empirical check of both by input gradients.

One recurrence, :func:`extend_window`, gives every receptive field of the package: a convolution or pooling with
kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` maps the window ``(r, j, a)`` of its input map (size,
jump between neighbouring positions, start of position 0, in input pixels) to ``(r + d (k - 1) j, j s, a - p j)``.
:func:`receptive_field` folds it over a list of layers; :func:`layer_geometry` over a real model traced with
``torch.fx``, where ReLU, BatchNorm (eval) and Dropout keep the window and where paths meet (ResNet's
``identity + residual``) the union box of the inputs is taken. For torchvision's ResNets the shortcut's window
lies inside the main path's, so the union is the main path's box; both are exact bounding boxes for a dense
network (checked against input gradients in ``tests/test_patches.py``). Position ``(y, x)`` sees input rows
``a_h + y j_h`` to ``a_h + y j_h + r_h`` (exclusive); ``a`` is negative where the window hangs into the padding.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from ._checks import frozen_eval, get_layer, model_device, positive_int


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Length of a convolution's (or pooling's) output along one axis.

    ``floor((n + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1``: the padded input
    has ``n + 2p`` positions, a dilated kernel covers ``d(k - 1) + 1`` of them, and the window
    can start at every ``stride``-th position from which it still fits.

    Args:
        n: input length (pixels along one axis).
        kernel: kernel size.
        stride: step between windows.
        padding: zeros added at each end.
        dilation: spacing between kernel taps.

    Returns:
        The output length, at least 1.

    Raises:
        ValueError: a non-positive size, a negative padding, or a (dilated) kernel wider than
            the padded input.
    """
    positive_int(n, "n")
    positive_int(kernel, "kernel")
    positive_int(stride, "stride")
    positive_int(padding, "padding", minimum=0)
    positive_int(dilation, "dilation")
    span = dilation * (kernel - 1) + 1
    if span > n + 2 * padding:
        raise ValueError(
            f"a kernel spanning {span} pixels (kernel {kernel}, dilation {dilation}) does not "
            f"fit into an input of {n} pixels with padding {padding}; use a smaller kernel or "
            "more padding")
    return (n + 2 * padding - span) // stride + 1


def _layer(spec: Sequence[int]) -> tuple[int, int, int]:
    if not isinstance(spec, Sequence) or len(spec) not in (2, 3):
        raise ValueError(f"a layer is a (kernel, stride) or (kernel, stride, dilation) tuple, got {spec!r}")
    kernel = positive_int(spec[0], "kernel")
    stride = positive_int(spec[1], "stride")
    dilation = positive_int(spec[2], "dilation") if len(spec) == 3 else 1
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
    size, jump, start = 1, 1, 0
    for spec in layers:
        kernel, stride, dilation = _layer(spec)
        size, jump, start = extend_window(size, jump, start, kernel, stride, 0, dilation)
    return size


def extend_window(size: int, jump: int, start: int, kernel: int, stride: int, padding: int,
                  dilation: int) -> tuple[int, int, int]:
    """The receptive-field recurrence along one axis: the window ``(size, jump, start)`` of a layer's input map
    (in input pixels) -> the window of its output map after a conv/pool ``(kernel, stride, padding, dilation)``.

    The kernel spans ``dilation * (kernel - 1)`` more steps of the input grid, each ``jump`` pixels wide; one
    step of the output grid is ``stride`` input steps; padding moves position 0's window ``padding`` steps out.
    """
    return size + dilation * (kernel - 1) * jump, jump * stride, start - padding * jump


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
    x = torch.ones(shape, device=model_device(model)) if x is None else x.detach().clone().reshape(shape)
    x.requires_grad_(True)
    with frozen_eval(model), torch.enable_grad():
        out = model(x)
        if out.dim() != 4:
            raise ValueError(f"the model must return a (1, C, H, W) map, got shape {tuple(out.shape)}")
        row, col = position
        if not (0 <= channel < out.shape[1] and 0 <= row < out.shape[2] and 0 <= col < out.shape[3]):
            raise ValueError(f"neuron (channel {channel}, row {row}, col {col}) is outside the output "
                             f"map of shape {tuple(out.shape[1:])}")
        (grad,) = torch.autograd.grad(out[0, channel, row, col], x)
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


# --- receptive-field geometry of a real model, traced with torch.fx ------------------------------------------


class Geometry(NamedTuple):
    """Where the positions of a layer's map look in the input, per axis ``(rows, cols)``.

    Position ``(y, x)`` sees the input box rows ``start[0] + y * jump[0]`` ... ``+ size[0]`` (exclusive), and
    likewise for columns; ``start`` is negative where the window of position 0 reaches into the padding.
    """

    size: tuple[int, int]  # receptive field in input pixels
    jump: tuple[int, int]  # input pixels between neighbouring positions (product of strides)
    start: tuple[int, int]  # input coordinate of the first pixel of the window of position (0, 0)

    def box(self, row: int, col: int, image_size: tuple[int, int] | None = None) -> Box:
        """The window of position ``(row, col)``; clipped to ``image_size = (H, W)`` when given."""
        top, left = self.start[0] + row * self.jump[0], self.start[1] + col * self.jump[1]
        box = Box(top, left, top + self.size[0], left + self.size[1])
        if image_size is None:
            return box
        h, w = image_size
        return Box(max(box.top, 0), max(box.left, 0), min(box.bottom, h), min(box.right, w))


_IDENTITY = Geometry((1, 1), (1, 1), (0, 0))
_POINTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                      nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
                      nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity)
_POINTWISE_FUNCTIONS = {operator.add, operator.mul, operator.sub, operator.iadd, operator.imul, torch.add,
                        torch.mul, torch.sub, torch.relu, torch.sigmoid, torch.tanh, F.relu, F.relu6, F.gelu,
                        F.silu, F.leaky_relu, F.dropout, torch.cat}
_POINTWISE_METHODS = {"add", "add_", "mul", "mul_", "relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}
_EMPIRICAL_HINT = "measure the window empirically with helpers.input_gradient_support instead"


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window_params(module: nn.Module, name: str) -> tuple[tuple[int, int], ...]:
    """``(kernel, stride, padding, dilation)`` per axis of a convolution or pooling layer."""
    k = _pair(module.kernel_size)
    s = _pair(module.stride if module.stride is not None else module.kernel_size)
    d = _pair(getattr(module, "dilation", 1))
    if isinstance(module, nn.Conv2d) and module.padding_mode == "circular":
        raise ValueError(f"layer {name!r} pads circularly, so its window wraps around the image; {_EMPIRICAL_HINT}")
    p = module.padding
    if isinstance(p, str):  # Conv2d(padding="same"/"valid"); PyTorch puts the odd pixel of "same" at the end
        p = (0, 0) if p == "valid" else tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
    return k, s, _pair(p), d


def _window_module(geo: Geometry, module: nn.Module, name: str) -> Geometry:
    """Fold one convolution or pooling layer into the geometry of its input."""
    k, s, p, d = _window_params(module, name)
    axes = [extend_window(geo.size[i], geo.jump[i], geo.start[i], k[i], s[i], p[i], d[i]) for i in range(2)]
    return Geometry(*(tuple(axis[j] for axis in axes) for j in range(3)))


def _size_module(size: tuple[int, int], module: nn.Module, name: str) -> tuple[int, int]:
    """The output size ``(h, w)`` of one convolution or pooling layer; 0 where the (dilated) kernel does not fit."""
    k, s, p, d = _window_params(module, name)
    out = []
    for i in range(2):
        fits = size[i] > 0 and size[i] + 2 * p[i] >= d[i] * (k[i] - 1) + 1
        out.append(conv_output_size(size[i], k[i], s[i], p[i], d[i]) if fits else 0)
    return out[0], out[1]


def _size_union(sizes: list[tuple[int, int]], what: str) -> tuple[int, int]:
    return min(h for h, _ in sizes), min(w for _, w in sizes)


def _union(geos: list[Geometry], what: str) -> Geometry:
    if len({g.jump for g in geos}) > 1:
        raise ValueError(f"{what} joins maps of different strides {[g.jump for g in geos]}; {_EMPIRICAL_HINT}")
    start = tuple(min(g.start[i] for g in geos) for i in range(2))
    end = tuple(max(g.start[i] + g.size[i] for g in geos) for i in range(2))
    return Geometry(size=(end[0] - start[0], end[1] - start[1]), jump=geos[0].jump, start=start)


class _Tracer(fx.Tracer):
    """fx tracer that keeps the target layer as one node (so a block like ``layer3`` gets its own output)."""

    def __init__(self, target: str | None) -> None:
        super().__init__()
        self.target = target

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname == self.target or super().is_leaf_module(m, qualname)


def _module_geometry(module: nn.Module, geo: Geometry, name: str, rule=(_window_module, _union)) -> Geometry:
    """Geometry at the output of ``module`` given the geometry of its (single) input. ``rule`` is the pair
    ``(fold one conv/pool, join maps)``: the receptive field by default, the map size for :func:`smallest_input`."""
    if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        return rule[0](geo, module, name)
    if isinstance(module, _POINTWISE_MODULES):
        return geo
    if isinstance(module, nn.Sequential):
        for i, child in enumerate(module):
            geo = _module_geometry(child, geo, f"{name}.{i}", rule)
        return geo
    if type(module).__module__.startswith("torch.nn"):
        raise ValueError(f"layer {name!r} ({type(module).__name__}) has no fixed window per position (it is not "
                         "a conv, pooling or pointwise layer); pick a convolutional layer or "
                         + _EMPIRICAL_HINT)
    return _graph_geometry(module, geo, None, name, rule)


def _graph_geometry(root: nn.Module, geo: Geometry, target: str | None, root_name: str,
                    rule=(_window_module, _union)) -> Geometry:
    """Trace ``root`` with fx and propagate the geometry from its input to ``target`` (or to its output)."""
    try:
        graph = _Tracer(target).trace(root)
    except Exception as e:  # fx cannot trace data-dependent control flow
        raise ValueError(f"cannot trace {type(root).__name__} with torch.fx ({e}); {_EMPIRICAL_HINT}") from e
    nodes = list(graph.nodes)
    if target is None:
        end = next(n for n in nodes if n.op == "output").args[0]
    else:  # a module called twice (ResNet's shared ReLU): its first call, like TruncatedForward
        end = next(n for n in nodes if n.op == "call_module" and n.target == target)
    needed, stack = set(), [end]  # only the ancestors of the end node matter
    while stack:
        node = stack.pop()
        if node not in needed:
            needed.add(node)
            stack.extend(node.all_input_nodes)
    geos: dict[fx.Node, Geometry] = {}
    for node in nodes:
        if node not in needed:
            continue
        inputs = [geos[n] for n in node.all_input_nodes if n in geos]
        where = f"{root_name + '.' if root_name else ''}{node.target}" if node.op == "call_module" else str(node)
        if node.op == "placeholder":
            geos[node] = geo
        elif node.op == "get_attr":
            continue  # a constant: no spatial dependence
        elif not inputs:
            raise ValueError(f"cannot follow the map through {where!r}; {_EMPIRICAL_HINT}")
        elif node.op == "call_module":
            if len(inputs) != 1:
                raise ValueError(f"module {where!r} takes several maps; {_EMPIRICAL_HINT}")
            geos[node] = _module_geometry(root.get_submodule(node.target), inputs[0], where, rule)
        elif ((node.op == "call_function" and node.target in _POINTWISE_FUNCTIONS)
              or (node.op == "call_method" and node.target in _POINTWISE_METHODS)):
            geos[node] = rule[1](inputs, where)
        else:
            raise ValueError(f"cannot compute the window through {where!r} ({node.op} {node.target}); "
                             + _EMPIRICAL_HINT)
        if node is end:
            return geos[node]
    return geos[end]


def layer_geometry(model: nn.Module, layer: str) -> Geometry:
    """Receptive-field geometry of the map of ``layer``: window size, stride and offset in input pixels.

    Computed from the modules (kernel, stride, padding, dilation of ``Conv2d``/``MaxPool2d``/``AvgPool2d``;
    pointwise layers keep it; residual sums take the union box); see the module docstring.

    Args:
        model: a CNN that ``torch.fx`` can trace (torchvision's VGG and ResNet can).
        layer: dotted module name, e.g. ``"features.28"`` or ``"layer3.1.conv2"``.

    Returns:
        :class:`Geometry`; ``geometry.box(row, col, image_size)`` is the window of one position.

    Raises:
        ValueError: unknown layer (with close names), or a layer/op without a fixed window (with a hint).
    """
    get_layer(model, layer)  # ValueError with close names
    return _graph_geometry(model, _IDENTITY, layer, "")


def spatial_layers(model: nn.Module) -> list[str]:
    """Names of the model's convolution and (non-adaptive) pooling layers, in ``named_modules()`` order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d)]


def smallest_input(model: nn.Module, layer: str | None = None) -> int:
    """The smallest square input side ``S`` for which ``layer``'s map (default: the last convolution or pooling
    layer, the deepest a forward pass to the logits needs) has at least one position.

    Computed from the layer geometry: the map size is folded through the traced model with
    :func:`conv_output_size` (a kernel wider than its padded input gives 0) and ``S`` found by bisection.

    Raises:
        ValueError: unknown layer (with close names), a model or layer ``torch.fx`` cannot fold.
    """
    if layer is None:
        spatial = spatial_layers(model)
        if not spatial:
            raise ValueError(f"{type(model).__name__} has no convolution or pooling layer; any input size works")
        layer = spatial[-1]
    get_layer(model, layer)

    def works(side: int) -> bool:
        return min(_graph_geometry(model, (side, side), layer, "", (_size_module, _size_union))) >= 1

    high = 1
    while not works(high):
        high *= 2
        if high > 1 << 16:
            raise ValueError(f"no input up to {high} px gives layer {layer!r} a map; {_EMPIRICAL_HINT}")
    low = high // 2  # works(low) is False (or low = 0)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if works(mid) else (mid, high)
    return high
