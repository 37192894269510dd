"""The package's one private module: input checks at the boundary, the one normalization of class and channel
indices, and the model-state context managers every technique runs inside.

Each check raises ``ValueError`` (``TypeError`` for a value of the wrong kind) with the fix in a one-line
message, before any hook is registered or any state is touched. Names here are public inside the package (this
module is private): ``from ._checks import as_batch``. It imports only :mod:`helpers.images` (and, through it,
:mod:`helpers.config`), so every other module can import it; ``frozen_eval`` and ``model_device`` have their
public home in :mod:`helpers.hooks`, and attribution targets are resolved in :mod:`helpers.objectives`.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .images import image_values as image_values  # the pixel check (its home: images, which _checks imports)
from .images import rgb_fix as rgb_fix  # how to convert a grey/RGBA image (its home: images)

# ---------------------------------------------------------------- indices

Indices = int | Sequence[int] | torch.Tensor | np.ndarray
"""One index or several: an int, a sequence of ints, an integer tensor or numpy array (0-d or 1-d)."""


def _describe(value: object) -> str:
    """What was given, briefly: a tensor/array by dtype and shape (its repr can be long), anything else by repr."""
    if isinstance(value, torch.Tensor | np.ndarray):
        kind = "tensor" if isinstance(value, torch.Tensor) else "numpy array"
        count = value.numel() if isinstance(value, torch.Tensor) else value.size
        small = f" {value.tolist()}" if count <= 8 else ""
        return f"a {kind} of dtype {value.dtype} and shape {tuple(value.shape)}{small}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _scalar(value: object) -> int | None:
    """``value`` as a plain int when it is one integer (int, numpy integer, 0-d integer tensor/array), else None."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Integral):  # int and the numpy integer scalars
        return int(value)
    if isinstance(value, torch.Tensor | np.ndarray) and value.ndim == 0:
        dtype_ok = (not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool
                    if isinstance(value, torch.Tensor) else np.issubdtype(value.dtype, np.integer))
        return int(value.item()) if dtype_ok else None
    return None


def index(value: object, what: str) -> int:
    """One index as a plain int: a Python int, a numpy integer or a 0-d integer tensor/array.

    ``ValueError`` (one line: what was given, what is expected) for a bool, a float, a sequence or anything else.
    """
    item = _scalar(value)
    if item is None:
        raise ValueError(f"{what} must be one integer index (an int, a numpy integer or a 0-d integer tensor), "
                         f"got {_describe(value)}")
    return item


def indices(value: object, what: str) -> tuple[int, ...]:
    """One index or several as a tuple of plain ints (``(c,)`` for one).

    Accepts a Python int, a numpy integer, a non-empty sequence of them, or an integer torch tensor / numpy
    array with 0 or 1 dimensions (e.g. ``top_filters(...).indices[0]``). ``ValueError`` (one line: what was
    given, what is expected) for bools, floats, strings, empty sequences and tensors of 2 or more dimensions.
    """
    one = _scalar(value)
    if one is not None:
        return (one,)
    expected = (f"{what} must be an integer index or a non-empty sequence of them (a list, or a 1-d integer "
                "tensor/array)")
    if isinstance(value, torch.Tensor | np.ndarray):
        if value.ndim != 1:
            hint = "; pick one row, e.g. idx[0] of top_filters(...).indices" if value.ndim == 2 else ""
            raise ValueError(f"{expected}, got {_describe(value)}{hint}")
        items = list(value)
    elif isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ValueError(f"{expected}, got {_describe(value)}")
    else:
        items = list(value)  # type: ignore[call-overload]
    out = tuple(_scalar(i) for i in items)
    if not out or any(i is None for i in out):
        raise ValueError(f"{expected}, got {_describe(value)}")
    return out  # type: ignore[return-value]


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


# ---------------------------------------------------------------- logits

def check_logits(scores: torch.Tensor, n: int) -> torch.Tensor:
    """``scores`` when it is a logits tensor ``(n, classes)``, else ``ValueError`` naming its shape."""
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[0] != n:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"the model must return logits (N, classes), got shape {shape}")
    return scores


# ---------------------------------------------------------------- model state

def model_device(model: nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter or buffer (``fallback`` for a model without any)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device(fallback)


@contextmanager
def kept_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the caller may switch modes (``model.train()``, ``model.eval()``); on exit, also on an
    exception or KeyboardInterrupt, each module's ``training`` flag is set back to exactly what it was (mixed
    flags included: ``model.train(flag)`` would overwrite a BatchNorm kept in eval mode inside a model in train
    mode)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Weights frozen (``requires_grad=False``) and every module in eval mode inside the block.

    On exit, also on an exception or KeyboardInterrupt, each parameter's ``requires_grad`` and each
    module's ``training`` flag is set back to exactly what it was (mixed flags included).
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with kept_modes(model):
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            model.eval()
            yield model
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
