"""Layers by dotted name, and forward hooks that always remove themselves."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn


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


@contextmanager
def capture_activations(model: nn.Module, names: str | Iterable[str], *, detach: bool = False,
                        clone: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named layers during the forward passes run inside the ``with`` block.

    >>> with capture_activations(model, ["layer1", "layer4"]) as acts:
    ...     model(x)
    >>> acts["layer4"].shape

    The hooks are removed when the block ends, also when it raises or is interrupted. A module called
    several times in one forward pass (ResNet's shared ReLUs) keeps the output of its last call.

    Args:
        model: any ``nn.Module``.
        names: one dotted layer name or several (see :func:`layer_names`).
        detach: store detached tensors (no autograd graph).
        clone: store a copy, so that a following in-place op (torchvision's ``ReLU(inplace=True)``) cannot
            overwrite the recorded value; the copy stays differentiable.

    Yields:
        dict ``{name: Tensor}`` filled by each forward pass.

    Raises:
        ValueError: a name is not a layer of ``model``.
    """
    names = [names] if isinstance(names, str) else list(names)
    modules = {name: get_layer(model, name) for name in names}  # validate all before registering any
    store: dict[str, torch.Tensor] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs, output):
            if isinstance(output, torch.Tensor):
                if detach:
                    output = output.detach()
                store[name] = output.clone() if clone else output
            else:
                store[name] = output
        return hook

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()
