"""The model-state utilities every technique runs inside: :func:`model_device`, :func:`kept_modes` and
:func:`frozen_eval`.

A leaf module (it imports nothing from the package) so that both :mod:`helpers.hooks` and the layer geometry of
:mod:`helpers.receptive`, which ``hooks`` imports, can use them; everything else imports them from
:mod:`helpers.hooks`, their public home (``kept_modes``, used by training, from here).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


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
