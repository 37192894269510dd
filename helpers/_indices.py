"""The one normalization of class and channel indices given by a user (part of :mod:`helpers._checks`).

A separate leaf module only because :mod:`helpers.objectives` needs it and :mod:`helpers._checks` imports
:mod:`helpers.objectives`; everything else imports it from ``_checks``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

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
