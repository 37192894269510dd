"""Maximally activating patches: the top-k responses of a channel over many images, and the exact input
window (receptive field) each one sees.

The window of each patch is computed from the layer geometry (:func:`helpers.receptive.layer_geometry`), never
guessed.

Course notes 1.7; Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks",
https://arxiv.org/abs/1311.2901.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import Indices, indices, positive_int
from ..config import progress
from ..hooks import TruncatedForward, check_channels, check_output_channels, frozen_eval, model_device
from ..images import ImageCollection, LazyImages
from ..receptive import Box, Geometry, layer_geometry

# --- top-k search and crops --------------------------------------------------------------------------------


@dataclass
class Patches:
    """What :func:`max_activating_patches` returns; tensors are on the images' device (the CPU for a folder),
    rows follow ``channels``."""

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


def top_activations(model: nn.Module, images: ImageCollection, layer: str, channels: Indices, k: int = 9,
                    *, size: int | None = 224, batch_size: int = 16, one_per_image: bool = False,
                    show_progress: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` largest activations of each channel over all positions of all images.

    One pass over the images in batches (no gradients, only the layers up to ``layer`` run); a running
    top-k per channel is kept, so memory does not grow with the number of images.

    Args:
        model: a CNN taking ImageNet-normalized images.
        images: a folder, ``(N, 3, H, W)`` tensor, list of tensors or dataset (see :func:`load_images`).
        layer: dotted module name.
        channels: one channel index or several (an int, a list, an integer tensor or numpy value).
        k: how many responses per channel.
        size: side of the images loaded from a folder.
        batch_size: images per forward pass.
        one_per_image: count only each image's largest response (no near-duplicate neighbouring positions).
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        ``(values, image_index, position)``: ``(n_channels, k)``, ``(n_channels, k)`` long and
        ``(n_channels, k, 2)`` long ``(row, col)``, on the images' device (a tensor's, the first listed
        tensor's; the CPU for a folder), largest value first.
    """
    channel_list = list(indices(channels, "a channel"))
    check_channels(model, layer, channel_list)  # ValueError naming close layers or the valid channel range
    k = positive_int(k, "k")
    source = LazyImages(images, size)
    device = model_device(model)
    index = torch.tensor(channel_list, device=device)
    nc = len(channel_list)
    best = torch.full((nc, 0), float("-inf"), device=device)
    best_img = torch.zeros((nc, 0), dtype=torch.long, device=device)
    best_pos = torch.zeros((nc, 0, 2), dtype=torch.long, device=device)
    n_batches = -(-len(source) // positive_int(batch_size, "batch_size"))
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        for first, batch in progress(source.batches(batch_size), total=n_batches, desc=f"{layer} top-{k}",
                                     enabled=show_progress):
            acts = forward(batch.to(device))[layer]
            check_output_channels(model, layer, acts, channel_list)  # also where the probe above could not run
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
    return best.to(source.device), best_img.to(source.device), best_pos.to(source.device)


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


def max_activating_patches(model: nn.Module, images: ImageCollection, layer: str, channels: Indices,
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
    channel_list = list(indices(channels, "a channel"))
    check_channels(model, layer, channel_list)  # before the geometry: a Linear layer is named, not the pool before it
    geometry = layer_geometry(model, layer)
    values, image_index, position = top_activations(model, images, layer, channel_list, k, size=size,
                                                    batch_size=batch_size, one_per_image=one_per_image,
                                                    show_progress=show_progress)
    source = LazyImages(images, size)
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
    return Patches(patches=torch.stack(crops), values=values, image_index=image_index, position=position,
                   boxes=boxes, clipped=clipped, names=names, layer=layer, channels=channel_list, geometry=geometry)
