"""Input checks at the boundary, written once: every public function of the package validates its inputs here.

Each check raises ``ValueError`` (``TypeError`` for a value of the wrong kind) with the fix in a one-line
message, before any hook is registered or any state is touched. Names here are public inside the package (this
module is private): ``from ._checks import as_batch``.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

# the one normalization of class/channel indices, here in a leaf module because objectives needs it too
from ._indices import Indices as Indices
from ._indices import index as index
from ._indices import indices as indices
from .images import image_values as image_values  # the pixel check (its home: images, which _checks imports)
from .images import rgb_fix as rgb_fix  # how to convert a grey/RGBA image (its home: images)
from .objectives import LOGITS, Objective, class_logit

Target = int | Sequence[int] | torch.Tensor | Objective
"""What an attribution explains: a class index (one for all images, or one per image) or an objective."""


# ---------------------------------------------------------------- layers

def layer_names(model: nn.Module) -> list[str]:
    """All dotted ``named_modules()`` names of ``model`` except the root (e.g. ``"features.28"``)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name`` (a dotted ``named_modules()`` path).

    Raises:
        ValueError: unknown name; the message lists the closest valid names.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a layer is named by a non-empty dotted string like 'features.28', got {name!r}")
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = layer_names(model)
        close = difflib.get_close_matches(name, names, n=6, cutoff=0.5) or names[:6]
        raise ValueError(
            f"layer {name!r} is not in {type(model).__name__}; close valid names: {', '.join(close)}"
            " (all names: helpers.layer_names(model))"
        ) from None


def last_conv(model: nn.Module) -> str | None:
    """The dotted name of the model's last ``nn.Conv2d`` (None without one)."""
    return next((name for name, m in reversed(list(model.named_modules())) if isinstance(m, nn.Conv2d)), None)


def not_a_channel_layer(model: nn.Module, layer: str, shape: tuple[int, ...]) -> ValueError:
    """The error for a channel of a layer without channel maps (e.g. VGG's ``classifier.0``, a Linear layer)."""
    conv = last_conv(model)
    hint = f"e.g. the last one, {conv!r}" if conv else "see helpers.layer_names(model)"
    dims = ", ".join(["N", *map(str, shape[1:])])
    return ValueError(f"layer {layer!r} ({type(get_layer(model, layer)).__name__}) gives ({dims}), not channel maps "
                      f"(N, C, h, w), so it has no channels to pick: name a convolutional layer, {hint}")


def image_too_small(layer: str, shape: tuple[int, ...], smallest: int, *, logits: bool = False,
                    fix: str | None = None, subject: str | None = None) -> ValueError:
    """The error for an image too small for the layers a forward pass needs, with the smallest size that works.

    ``fix`` is the remedy of the function that raised it, with ``{n}`` for that size (default: "pass an image of
    at least n x n px"; an ascent names its own size argument); ``subject`` replaces "an image of H x W px"."""
    where = f"the model's last convolution/pooling layer {layer!r}" if logits else f"layer {layer!r}"
    what = subject or f"an image of {shape[-2]}x{shape[-1]} px"
    remedy = (fix or "pass an image of at least {n}x{n} px").format(n=smallest)
    return ValueError(f"{what} is too small for {where}: its receptive-field geometry needs at least "
                      f"{smallest}x{smallest} px; {remedy}")


# ---------------------------------------------------------------- numbers

def is_integer(value: object) -> bool:
    """Whether ``value`` is one integer: a Python int or a numpy integer (numbers.Integral), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as a plain int when it is an integer (an int or a numpy integer, not a bool) ``>= minimum``,
    else ``ValueError`` naming ``name``."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def int_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """A positive int ``v`` as ``(v, v)``, or a pair ``(height, width)`` of positive ints, else ``ValueError``."""
    pair = (value, value) if is_integer(value) else tuple(value)
    if len(pair) != 2 or any(not is_integer(v) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair (height, width) of positive ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def finite_number(value: object, name: str, *, positive: bool = False, minimum: float | None = None) -> float:
    """``value`` as a float when it is a finite real number (int, float or numpy number, not a bool or a string),
    ``> 0`` with ``positive``, ``>= minimum`` when given; else ``ValueError`` (``TypeError`` for a non-number)
    naming ``name``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and number <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be a number >= {minimum:g}, got {value!r}")
    return number


def check_optimizer(opt: object, where: str,
                    instead: str = "'adam', 'sgd' or a factory of torch.optim.Adam") -> torch.optim.Optimizer:
    """``opt`` when it is a first-order ``torch.optim.Optimizer``; a one-line error for anything else and for
    L-BFGS, whose ``step`` needs a closure that re-evaluates the loss (``where`` names the function, ``instead``
    what to pass)."""
    if isinstance(opt, torch.optim.LBFGS):
        raise ValueError(f"{where} does not support torch.optim.LBFGS (its step needs a closure re-evaluating the "
                         f"loss): pass a first-order optimizer, {instead}")
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"{where}'s optimizer factory must return a torch.optim.Optimizer, got {type(opt).__name__}")
    return opt


# ---------------------------------------------------------------- images

def first_conv(model: nn.Module) -> str | None:
    """The dotted name of the model's first ``nn.Conv2d`` in ``named_modules()`` order (None without one)."""
    return next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter or buffer (None without one)."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def as_batch(image: torch.Tensor, model: nn.Module | None = None) -> torch.Tensor:
    """``(C, H, W)`` -> ``(1, C, H, W)``; ``(N, C, H, W)`` unchanged; anything else is a ValueError.

    The pixels are checked by :func:`image_values` (floating point, finite, not meta). With ``model``, a
    floating-point image of another precision (float64, float16, bfloat16) is cast to the model's dtype, and the
    channel count must be what the model's first convolution takes: a grey ``(N, 1, H, W)`` or an RGBA
    ``(N, 4, H, W)`` image given to an RGB model is refused with the conversion in the message.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a tensor (N, 3, H, W), e.g. from load_image, not {type(image).__name__}")
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise ValueError(f"image must be (N, C, H, W) or (C, H, W), got shape {tuple(image.shape)}")
    image_values(image)
    if model is not None:
        check_image_channels(model, image)
        dtype = model_dtype(model)
        if dtype is not None and image.dtype != dtype:
            image = image.to(dtype)
    return image


def check_image_channels(model: nn.Module, image: torch.Tensor) -> None:
    """``ValueError`` with the conversion when an RGB model (first convolution takes 3 channels) gets an image
    ``(N, C, H, W)`` with ``C != 3`` (a model taking other channels is not second-guessed)."""
    name = first_conv(model)
    c = image.shape[1]
    if name is None or get_layer(model, name).in_channels != 3 or c == 3:
        return
    raise ValueError(f"the model takes RGB images (N, 3, H, W), got {c} channels (shape {tuple(image.shape)}); "
                     + rgb_fix(c))


# ---------------------------------------------------------------- logits and targets

def check_logits(scores: torch.Tensor, n: int) -> torch.Tensor:
    """``scores`` when it is a logits tensor ``(n, classes)``, else ``ValueError`` naming its shape."""
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[0] != n:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"the model must return logits (N, classes), got shape {shape}")
    return scores


def target_indices(target: int | Sequence[int] | torch.Tensor | Objective, n: int, classes: int | None,
                   device: torch.device) -> torch.Tensor:
    """``target`` (one class index for all ``n`` images, one per image, or a :func:`class_logit` objective) as a
    long tensor ``(n,)`` on ``device``; ``ValueError`` for a float/bool target, a wrong count, an index outside
    ``0 .. classes - 1`` (``classes=None``: the range is left to :func:`class_logit` on the logits), or an
    objective that is not one class score."""
    if isinstance(target, Objective):
        if getattr(target, "classes", None) is None:
            raise ValueError(f"this needs a class to score, an int or objectives.class_logit(c), not {target!r}")
        target = target.classes
    items = indices(target, "target (a class index)")
    if len(items) not in (1, n):
        raise ValueError(f"got {len(items)} targets for a batch of {n} images; pass one int or one per image")
    t = torch.tensor(items * n if len(items) == 1 else items, dtype=torch.long, device=device)
    if classes is not None and ((t < 0).any() or (t >= classes).any()):
        raise ValueError(f"target {t.tolist()} out of range: the model has {classes} classes (0..{classes - 1})")
    return t


def target_objective(target: Target, n: int) -> Objective:
    """The one resolver of attribution targets: an :class:`~helpers.objectives.Objective` is used as it is, a class
    index (one for all ``n`` images, or one per image; int, sequence or integer tensor) becomes
    :func:`~helpers.objectives.class_logit`. ``ValueError`` for a float/bool target or a wrong count."""
    if isinstance(target, Objective):
        if target.batch is not None and target.batch != n:
            raise ValueError(f"{target!r} scores {target.batch} images but the batch has {n}; give one target "
                             "for all images or one per image")
        return target
    items = indices(target, "target (a class index, one per image, or an objective from helpers.objectives)")
    if len(items) not in (1, n):
        raise ValueError(f"got {len(items)} targets for a batch of {n} images; pass one int or one per image")
    return class_logit(items[0] if len(items) == 1 else items)


def target_scores(objective: Objective, acts: Mapping[str, torch.Tensor], n: int) -> torch.Tensor:
    """``objective(acts)``, the ``(n,)`` scores to explain, after checking that the model gave logits
    ``(n, classes)`` when the objective reads them."""
    if LOGITS in objective.reads:
        check_logits(acts[LOGITS], n)
    return objective(acts)
