"""Modified backpropagation through ReLUs: plain backprop, "deconvnet" and guided backpropagation.

The three differ only in what a ReLU passes backwards, given its forward input ``x`` and the upstream
gradient ``g`` (see the 3x3 example of the course notes, reproduced by :func:`relu_backward`):

| rule | gradient passed to ``x`` |
| --- | --- |
| ``"backprop"`` | ``g`` where ``x > 0``, else 0 (the true gradient) |
| ``"deconvnet"`` | ``g`` where ``g > 0``, else 0 (Zeiler & Fergus, https://arxiv.org/abs/1311.2901) |
| ``"guided"`` | ``g`` where ``x > 0`` and ``g > 0``, else 0 (Springenberg et al., https://arxiv.org/abs/1412.6806) |

Every other layer backpropagates its true gradient. The rule is installed by :func:`relu_rule`, which wraps
the forward of each ``nn.ReLU`` module with a pair of forward hooks (no module is swapped, no flag changed)
and removes them on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from ._checks import as_batch
from .hooks import capture, frozen_eval
from .objectives import Target, target_objective, target_scores

Rule = Literal["backprop", "deconvnet", "guided"]
RULES: tuple[str, ...] = ("backprop", "deconvnet", "guided")


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown ReLU backward rule {rule!r}; use one of {', '.join(RULES)}")


class _ReLUWithRule(torch.autograd.Function):
    """``relu(x)`` forwards; backwards, the chosen rule instead of the true ReLU gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: str) -> torch.Tensor:
        positive = x > 0  # a fresh tensor: later in-place ops of the model cannot invalidate it
        ctx.save_for_backward(positive)
        ctx.rule = rule
        return torch.relu(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (positive,) = ctx.saved_tensors
        zero = grad.new_zeros(())
        if ctx.rule == "backprop":
            keep = positive
        elif ctx.rule == "deconvnet":
            keep = grad > 0
        else:
            keep = positive & (grad > 0)
        return torch.where(keep, grad, zero), None


def relu_backward(forward_input: torch.Tensor, upstream: torch.Tensor, rule: Rule = "guided") -> torch.Tensor:
    """What one ReLU passes backwards under ``rule``: the notes' 3x3 example, side by side.

    Runs the same autograd function that :func:`relu_rule` installs in a model.

    Args:
        forward_input: the ReLU's input ``x``, any shape.
        upstream: the gradient arriving from above, same shape as ``x``.
        rule: ``"backprop"``, ``"deconvnet"`` or ``"guided"``.

    Returns:
        The gradient passed to ``x``, same shape (a new tensor; the arguments are left unchanged).
    """
    _check_rule(rule)
    if forward_input.shape != upstream.shape:
        raise ValueError(f"forward_input {tuple(forward_input.shape)} and upstream {tuple(upstream.shape)} "
                         "must have the same shape")
    x = forward_input.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_ReLUWithRule.apply(x, rule), x, grad_outputs=upstream.detach())
    return grad


@contextmanager
def relu_rule(model: nn.Module, rule: Rule = "guided") -> Iterator[nn.Module]:
    """Inside the block, every ``nn.ReLU`` module of ``model`` backpropagates with ``rule``.

    A forward pre-hook keeps the ReLU's input (a copy when the ReLU is in-place, since the module then
    overwrites it) and a forward hook replaces the module's output by the same values computed by a custom
    autograd function whose backward applies the rule. In-place ReLUs keep their ``inplace`` flag, ReLU modules
    called several times per pass (ResNet's blocks) get the rule at every call, and the hooks are removed on
    exit, also on an exception or KeyboardInterrupt. Functional ``F.relu``/``torch.relu`` calls in a model's
    ``forward`` are not modules and are NOT covered: they keep the true gradient.

    Args:
        model: any ``nn.Module``; left exactly as found after the block.
        rule: ``"backprop"``, ``"deconvnet"`` or ``"guided"``.

    Yields:
        ``model``.
    """
    _check_rule(rule)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    handles = []
    inputs: dict[nn.Module, list[torch.Tensor]] = {m: [] for m in relus}

    def keep_input(module: nn.Module, args):
        x = args[0]
        inputs[module].append(x.clone() if module.inplace else x)

    def apply_rule(module: nn.Module, args, output):
        return _ReLUWithRule.apply(inputs[module].pop(), rule)

    try:
        for m in relus:
            handles.append(m.register_forward_pre_hook(keep_input))
            handles.append(m.register_forward_hook(apply_rule))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def modified_backprop(model: nn.Module, image: torch.Tensor, target: Target, *, rule: Rule = "guided") -> torch.Tensor:
    """Gradient of a class score (or of any objective) w.r.t. the image, ReLUs under ``rule``.

    Computed in eval mode with frozen weights on a copy of the input (``torch.autograd.grad``), so no
    parameter's ``.grad`` is touched; the model's flags are restored afterwards, also on errors. With
    ``rule="backprop"`` this is the ordinary input gradient.

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits ``(N, classes)``.
        image: ``(N, 3, H, W)`` or ``(3, H, W)``, normalized; left unchanged.
        target: class index (one for all images or one per image), or an objective (:mod:`helpers.objectives`),
            e.g. ``channel_max("features.29", 5)``: a channel's strongest neuron in each image (the notes' "pick
            a channel, pick a very high activation").
        rule: ``"backprop"``, ``"deconvnet"`` or ``"guided"`` (see :func:`relu_rule`).

    Returns:
        Tensor of the image's shape, on the image's device.

    Raises:
        ValueError: unknown rule, bad image shape, target/channel out of range, unknown layer name.
    """
    _check_rule(rule)
    x = as_batch(image, model).detach().clone().requires_grad_(True)
    objective = target_objective(target, x.shape[0])
    with frozen_eval(model), relu_rule(model, rule), capture(model, objective) as forward, torch.enable_grad():
        score = target_scores(objective, forward(x), x.shape[0]).sum()
        # in eval mode each image's objective depends on that image alone: one pass gives every image its own
        (grad,) = torch.autograd.grad(score, x)
    return grad.reshape(image.shape)


def guided_backprop(model: nn.Module, image: torch.Tensor, target: Target) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015, https://arxiv.org/abs/1412.6806).

    At every ``nn.ReLU`` module only gradient where the forward input was positive AND the incoming gradient
    is positive passes. Works with in-place ReLUs and reused ReLU modules; functional ``F.relu`` calls inside
    a model's ``forward`` keep their true gradient. See :func:`modified_backprop` for the arguments (``target``
    a class or an objective such as ``channel_max("features.29", 5)``).

    Returns:
        Tensor of the image's shape ``(N, 3, H, W)`` (or ``(3, H, W)``), on the image's device.
    """
    return modified_backprop(model, image, target, rule="guided")


def deconvnet(model: nn.Module, image: torch.Tensor, target: Target) -> torch.Tensor:
    """The "deconvnet" backward pass (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901).

    At every ``nn.ReLU`` module the gradient passes where the incoming gradient is positive, whatever the
    forward input was. Same arguments and coverage as :func:`guided_backprop`.

    Returns:
        Tensor of the image's shape, on the image's device.
    """
    return modified_backprop(model, image, target, rule="deconvnet")
