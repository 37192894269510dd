"""Maximally activating patches: the top-k responses of a channel over many images, and the exact input
window (receptive field) each one sees.

The window of a position is computed from the layer geometry, never guessed: the model is traced with
``torch.fx`` and every node up to the layer is folded into ``(size, jump, start)`` per axis. A convolution or
pooling with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` maps ``(r, j, a)`` to
``(r + d (k - 1) j, j s, a - p j)``; ReLU, BatchNorm (eval) and Dropout keep it; where paths meet (ResNet's
``identity + residual``) the union box of the inputs is taken. For torchvision's ResNets the shortcut's window
lies inside the main path's, so the union is the main path's box; both are exact bounding boxes for a dense
network (checked against input gradients in ``tests/test_patches.py``). Position ``(y, x)`` sees input rows
``a_h + y j_h`` to ``a_h + y j_h + r_h`` (exclusive); ``a`` is negative where the window hangs into the padding.

Course notes 1.7; Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks",
https://arxiv.org/abs/1311.2901.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from .config import progress
from .hooks import TruncatedForward, check_channels, frozen_eval, get_layer, model_device
from .images import PHOTO_SUFFIXES, load_image
from .receptive import Box

ImageCollection = str | os.PathLike | torch.Tensor | Sequence[torch.Tensor] | torch.utils.data.Dataset


# --- a set of images: a folder, a batch tensor, a list of tensors, or a dataset ------------------------------


class _Images:
    """Random access to normalized images ``(3, H, W)`` from any :data:`ImageCollection`, loaded lazily."""

    def __init__(self, images: ImageCollection, size: int | None) -> None:
        self.size = size
        self.files: list[Path] | None = None
        if isinstance(images, str | os.PathLike):
            folder = Path(images).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"image folder {folder} does not exist (or is not a folder); "
                                        "pass an existing folder of images, or a list of image tensors")
            self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
            if not self.files:
                raise ValueError(f"image folder {folder} holds no images (looked for {', '.join(PHOTO_SUFFIXES)})")
            self.items = None
        elif isinstance(images, torch.Tensor):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"an image batch must be (N, 3, H, W), got {tuple(images.shape)}")
            self.items = images
        else:
            self.items = images
        if len(self) == 0:
            raise ValueError("the image collection is empty; give at least one image")

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.files is not None:
            return load_image(self.files[i], self.size, device="cpu")[0]
        item = self.items[i]
        if isinstance(item, tuple | list):  # a dataset's (image, label)
            item = item[0]
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"image {i} is a {type(item).__name__}, not a tensor; load it with helpers.load_image")
        item = item[0] if item.dim() == 4 and item.shape[0] == 1 else item
        if item.dim() != 3 or item.shape[0] != 3:
            raise ValueError(f"image {i} must be a normalized (3, H, W) tensor, got shape {tuple(item.shape)}")
        return item.detach()

    def name(self, i: int) -> str:
        return self.files[i].name if self.files is not None else f"#{i}"

    def batches(self, batch_size: int):
        """Yield ``(first_index, (B, 3, H, W))``; a batch ends early where the image size changes."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        start, current = 0, []
        for i in range(len(self)):
            img = self[i]
            if current and (len(current) == batch_size or img.shape != current[0].shape):
                yield start, torch.stack(current)
                start, current = i, []
            current.append(img)
        yield start, torch.stack(current)


def load_images(images: ImageCollection, size: int | None = 224, *,
                device: torch.device | str | None = None) -> torch.Tensor:
    """All images of a collection as one normalized batch (for thumbnails and for cropping).

    Args:
        images: a folder (image files sorted by name, loaded with :func:`helpers.load_image` at ``size``),
            a tensor ``(N, 3, H, W)``, a list of ``(3, H, W)``/``(1, 3, H, W)`` tensors, or a dataset whose
            items are such tensors or ``(tensor, label)`` pairs (all the same size).
        size: side of the square images loaded from a folder (ignored for tensors).
        device: where the batch goes (default CPU).

    Returns:
        Tensor ``(N, 3, H, W)``.
    """
    source = _Images(images, size)
    items = [source[i] for i in range(len(source))]
    if len({tuple(t.shape) for t in items}) > 1:
        raise ValueError("the images differ in size; load them with one `size` (helpers.load_image(path, size))")
    return torch.stack(items).to("cpu" if device is None else device)


# --- receptive-field geometry from the modules -------------------------------------------------------------


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


def _window_module(geo: Geometry, module: nn.Module, name: str) -> Geometry:
    """Fold one convolution or pooling layer into the geometry of its input."""
    k = _pair(module.kernel_size)
    s = _pair(module.stride if module.stride is not None else module.kernel_size)
    d = _pair(getattr(module, "dilation", 1))
    if isinstance(module, nn.Conv2d) and module.padding_mode == "circular":
        raise ValueError(f"layer {name!r} pads circularly, so its window wraps around the image; {_EMPIRICAL_HINT}")
    p = module.padding
    if isinstance(p, str):  # Conv2d(padding="same"/"valid"); PyTorch puts the odd pixel of "same" at the end
        p = (0, 0) if p == "valid" else tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
    p = _pair(p)
    return Geometry(size=tuple(geo.size[i] + d[i] * (k[i] - 1) * geo.jump[i] for i in range(2)),
                    jump=tuple(geo.jump[i] * s[i] for i in range(2)),
                    start=tuple(geo.start[i] - p[i] * geo.jump[i] for i in range(2)))


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


def _module_geometry(module: nn.Module, geo: Geometry, name: str) -> Geometry:
    """Geometry at the output of ``module`` given the geometry of its (single) input."""
    if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        return _window_module(geo, module, name)
    if isinstance(module, _POINTWISE_MODULES):
        return geo
    if isinstance(module, nn.Sequential):
        for i, child in enumerate(module):
            geo = _module_geometry(child, geo, f"{name}.{i}")
        return geo
    if type(module).__module__.startswith("torch.nn"):
        raise ValueError(f"layer {name!r} ({type(module).__name__}) has no fixed window per position (it is not "
                         "a conv, pooling or pointwise layer); pick a convolutional layer or "
                         + _EMPIRICAL_HINT)
    return _graph_geometry(module, geo, None, name)


def _graph_geometry(root: nn.Module, geo: Geometry, target: str | None, root_name: str) -> Geometry:
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
            geos[node] = _module_geometry(root.get_submodule(node.target), inputs[0], where)
        elif ((node.op == "call_function" and node.target in _POINTWISE_FUNCTIONS)
              or (node.op == "call_method" and node.target in _POINTWISE_METHODS)):
            geos[node] = _union(inputs, where)
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


# --- top-k search and crops --------------------------------------------------------------------------------


@dataclass
class Patches:
    """What :func:`max_activating_patches` returns; tensors are on the model's device, rows follow ``channels``."""

    patches: torch.Tensor  # (n_channels, k, 3, R_h, R_w) normalized crops; outside the image 0 (= dataset mean)
    values: torch.Tensor  # (n_channels, k) activations, largest first
    image_index: torch.Tensor  # (n_channels, k) long: index of the image in the collection
    position: torch.Tensor  # (n_channels, k, 2) long: (row, col) in the layer's map
    boxes: list[list[Box]]  # exact windows in input pixels (may reach outside the image)
    clipped: list[list[Box]]  # the part of each window inside the image: what was copied into the crop
    names: list[list[str]]  # file name (or "#i") of each patch's image
    layer: str
    channels: list[int]
    geometry: Geometry


def top_activations(model: nn.Module, images: ImageCollection, layer: str, channels: int | Sequence[int], k: int = 9,
                    *, size: int | None = 224, batch_size: int = 16, one_per_image: bool = False,
                    show_progress: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` largest activations of each channel over all positions of all images.

    One pass over the images in batches (no gradients, only the layers up to ``layer`` run); a running
    top-k per channel is kept, so memory does not grow with the number of images.

    Args:
        model: a CNN taking ImageNet-normalized images.
        images: a folder, ``(N, 3, H, W)`` tensor, list of tensors or dataset (see :func:`load_images`).
        layer: dotted module name.
        channels: one channel index or several.
        k: how many responses per channel.
        size: side of the images loaded from a folder.
        batch_size: images per forward pass.
        one_per_image: count only each image's largest response (no near-duplicate neighbouring positions).
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        ``(values, image_index, position)``: ``(n_channels, k)``, ``(n_channels, k)`` long and
        ``(n_channels, k, 2)`` long ``(row, col)``, on the model's device, largest value first.
    """
    channel_list = [channels] if isinstance(channels, int) and not isinstance(channels, bool) else list(channels)
    if not channel_list:
        raise ValueError("give at least one channel")
    check_channels(model, layer, channel_list)  # ValueError naming close layers or the valid channel range
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    source = _Images(images, size)
    device = model_device(model)
    index = torch.tensor(channel_list, device=device)
    nc = len(channel_list)
    best = torch.full((nc, 0), float("-inf"), device=device)
    best_img = torch.zeros((nc, 0), dtype=torch.long, device=device)
    best_pos = torch.zeros((nc, 0, 2), dtype=torch.long, device=device)
    n_batches = -(-len(source) // batch_size) if isinstance(batch_size, int) and batch_size > 0 else None
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        for first, batch in progress(source.batches(batch_size), total=n_batches, desc=f"{layer} top-{k}",
                                     enabled=show_progress):
            acts = forward(batch.to(device))[layer]
            if acts.dim() != 4:
                raise ValueError(f"layer {layer!r} gives shape {tuple(acts.shape)}, not a map (N, C, h, w); "
                                 "pick a convolutional layer")
            b, _, h, w = acts.shape
            sel = acts.index_select(1, index).float().transpose(0, 1).reshape(nc, b, h * w)  # (nc, B, h*w)
            img = torch.arange(first, first + b, device=device)
            if one_per_image:
                values, flat = sel.max(dim=2)  # (nc, B)
                img = img.expand(nc, b)
            else:
                values = sel.reshape(nc, b * h * w)
                flat = torch.arange(h * w, device=device).repeat(b).expand(nc, -1)
                img = img.repeat_interleave(h * w).expand(nc, -1)
            pos = torch.stack([flat // w, flat % w], dim=-1)
            values = torch.cat([best, values], 1)
            top = values.topk(min(k, values.shape[1]), dim=1)
            best = top.values
            best_img = torch.cat([best_img, img], 1).gather(1, top.indices)
            best_pos = torch.cat([best_pos, pos], 1).gather(1, top.indices.unsqueeze(-1).expand(-1, -1, 2))
    if best.shape[1] < k:
        raise ValueError(f"k={k} is more than the {best.shape[1]} candidate responses in the images; lower k")
    return best, best_img, best_pos


def crop_window(image: torch.Tensor, box: Box) -> torch.Tensor:
    """Crop ``box`` from a normalized image ``(3, H, W)``; pixels of the box outside the image are 0.

    0 in the normalized space is the dataset's mean colour, which is also what a first convolution's
    zero padding feeds the network, so a border crop shows the window as the network saw it.

    Returns:
        ``(3, box.height, box.width)`` on the image's device.
    """
    _, h, w = image.shape
    out = image.new_zeros(3, box.height, box.width)
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.bottom, h), min(box.right, w)
    if bottom > top and right > left:
        out[:, top - box.top:bottom - box.top, left - box.left:right - box.left] = image[:, top:bottom, left:right]
    return out


def max_activating_patches(model: nn.Module, images: ImageCollection, layer: str, channels: int | Sequence[int],
                           k: int = 9, *, size: int | None = 224, batch_size: int = 16,
                           one_per_image: bool = False, show_progress: bool | None = None) -> Patches:
    """The input windows that excite a channel most (course notes 1.7).

    Finds the ``k`` largest activations of each channel over every position of every image
    (:func:`top_activations`) and crops the receptive field of each from its image
    (:func:`layer_geometry`, which counts padding, stride, dilation and pooling). At the image border the
    window is cropped whole and its outside filled with 0 (the dataset mean), so all patches of a layer have
    the same size; ``Patches.clipped`` holds the part that lies in the image.

    Args:
        model: a CNN taking ImageNet-normalized images; left as found.
        images: a folder of image files, an ``(N, 3, H, W)`` tensor, a list of tensors or a dataset.
        layer: dotted module name, e.g. ``"features.21"``.
        channels: one channel index or several (one row of patches each).
        k: patches per channel.
        size: side of the images loaded from a folder.
        batch_size: images per forward pass.
        one_per_image: at most one patch per image (its strongest response).
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`Patches` with ``patches`` ``(n_channels, k, 3, R_h, R_w)``.

    Raises:
        ValueError: unknown layer (close names), channel out of range (valid range), empty folder, bad k.
        FileNotFoundError: the folder does not exist.
    """
    geometry = layer_geometry(model, layer)
    values, image_index, position = top_activations(model, images, layer, channels, k, size=size,
                                                    batch_size=batch_size, one_per_image=one_per_image,
                                                    show_progress=show_progress)
    source = _Images(images, size)
    device = values.device
    cache: dict[int, torch.Tensor] = {}
    crops, boxes, clipped, names = [], [], [], []
    for c in range(values.shape[0]):
        row_crops, row_boxes, row_clipped, row_names = [], [], [], []
        for i, (y, x) in zip(image_index[c].tolist(), position[c].tolist(), strict=True):
            if i not in cache:
                cache[i] = source[i].to(device)
            img = cache[i]
            box = geometry.box(y, x)
            row_boxes.append(box)
            row_clipped.append(geometry.box(y, x, tuple(img.shape[-2:])))
            row_crops.append(crop_window(img, box))
            row_names.append(source.name(i))
        crops.append(torch.stack(row_crops))
        boxes.append(row_boxes)
        clipped.append(row_clipped)
        names.append(row_names)
    channel_list = [channels] if isinstance(channels, int) else list(channels)
    return Patches(patches=torch.stack(crops), values=values, image_index=image_index, position=position,
                   boxes=boxes, clipped=clipped, names=names, layer=layer, channels=channel_list, geometry=geometry)
