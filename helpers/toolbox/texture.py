"""Texture synthesis from Gram matrices (Gatys, Ecker & Bethge 2015, https://arxiv.org/abs/1505.07376).

A texture is described by the Gram matrices (channel co-activations, averaged over positions) of several
layers; a new image with the same texture is found by matching them, starting from noise: :func:`helpers.render`
of the objective :func:`helpers.objectives.gram_match`. The Gram matrix lives in :mod:`helpers.objectives`.

Differences from the paper, on purpose (what this project's networks and loops offer): any network and layers
(the gallery uses torchvision's VGG16 with its max pooling at relu1_1 ... relu4_1, and ResNet-18), not VGG19
with max pooling replaced by average pooling; the Gram matrix divided by the number of positions and each
layer's mismatch divided by ``||T_l||^2`` of its target, not Gatys et al.'s ``1 / (4 N_l^2 M_l^2)``; Adam on
the pixels instead of L-BFGS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import as_batch, positive_int
from ..hooks import TruncatedForward, frozen_eval, model_device
from ..objectives import gram_match, gram_matrix, per_layer_weights
from .engine import NOISE, Fill, LossResult, OptimizerSpec, Start, render, technique_result


@dataclass(kw_only=True)
class TextureResult(LossResult):
    """What :func:`synthesize_texture` returns: a :class:`helpers.RenderResult` (``image``, ``history``,
    ``score``, ``tracked``, ``tracked_score``, ``interrupted``; tensors detached) plus ``layers``, and the loss.

    ``history`` ``(steps, N)`` and ``score`` ``(N,)`` are what the engine maximized: minus the Gram loss
    (:func:`helpers.objectives.gram_loss`), before each update and of the returned images, on the CPU; ``loss`` ``(N,)``
    (``= -score``) and ``loss_history`` ``(steps, N)`` (``= -history``) give the loss itself (there are no
    priors: ``tracked["total"]`` is ``history``). ``image`` ``(N, 3, H, W)`` holds the textures, normalized, on
    the texture's device."""

    layers: list[str]  # the matched layers


def synthesize_texture(model: nn.Module, texture: torch.Tensor, layers: str | Sequence[str], *,
                       start: Start | None = None, fill: Fill = NOISE, n: int = 1, steps: int = 200, lr: float = 0.05,
                       layer_weights: Sequence[float] | Mapping[str, float] | None = None, clamp: bool = True,
                       optimizer: OptimizerSpec = "adam", seed: int = 0, amp: bool = False,
                       channels_last: bool | None = None, show_progress: bool | None = None) -> TextureResult:
    """Synthesize a texture from noise by matching the Gram matrices of ``layers`` of a texture image.

    The loss minimized is :func:`helpers.objectives.gram_loss`,
    ``sum_l w_l * ||G_l(I) - G_l(T)||^2 / ||G_l(T)||^2`` with :func:`gram_matrix` (the relative error makes
    layers of different scale weigh alike), minimized with ``optimizer`` (Adam by default, where the paper uses
    L-BFGS; see the module docstring for the other differences). Only the layers up to the deepest one run;
    weights get no gradients; the model and
    ``texture`` are left as found. Paper: Gatys et al. 2015, https://arxiv.org/abs/1505.07376

    Args:
        model: a CNN taking ImageNet-normalized images.
        texture: ``(1, 3, h, w)`` or ``(3, h, w)`` normalized texture image (e.g. :func:`helpers.load_image`).
        layers: one dotted layer name or several, e.g. ``["features.3", "features.8", "features.15"]``.
        start: the start image, as in every ascent: None (default) for noise of the texture's size, a size ``S``
            / ``(H, W)`` of the output, or normalized start images ``(1 or n, 3, H, W)``.
        fill: the pixel values of a start made from a size: ``(low, high)`` uniform noise (default: mid-gray
            ``(0.4, 0.6)``, :func:`helpers.render`'s) or one value in ``[0, 1]``.
        n: how many textures (independent start noise each).
        steps: optimizer steps.
        lr: learning rate of a named optimizer (normalized units).
        layer_weights: the per-layer weights ``w_l``, one per layer or ``{layer: w_l}`` (default all 1; the
            ``weights`` of :func:`helpers.objectives.gram_match`).
        clamp: clamp pixels to the displayable range after each step.
        optimizer: ``"adam"``, ``"sgd"`` or a factory ``params -> Optimizer``.
        seed: seeds the start noise (a local generator).
        amp: run the network in bfloat16 autocast (the image stays float32).
        channels_last: channels-last convolutions (:mod:`helpers.speed`); None: on the CPU yes, on a GPU no.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`TextureResult`: ``image`` ``(n, 3, H, W)`` on the texture's device; ``history`` ``(steps, n)``
        and ``score`` ``(n,)`` minus the Gram loss (``loss_history`` and ``loss`` the loss itself);
        ``interrupted`` True after Ctrl-C; ``layers``.

    Raises:
        ValueError: unknown layer (with close names), bad shapes, a layer whose texture activations are all zero.
        FloatingPointError: the image became NaN/inf.
    """
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    weights = per_layer_weights(names, layer_weights, "layer_weights")
    tex = as_batch(texture, model)  # (3, h, w) -> (1, 3, h, w); a grey/RGBA tensor says how to convert it
    if tex.dim() != 4 or tex.shape[:2] != (1, 3):
        raise ValueError(f"texture must be one normalized image (1, 3, h, w), got {tuple(texture.shape)}")
    n, steps = positive_int(n, "n"), positive_int(steps, "steps")
    start = tuple(tex.shape[-2:]) if start is None else start
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, names) as forward:
        targets = {k: gram_matrix(a) for k, a in forward(tex.detach().to(model_device(model), torch.float32)).items()}
    dead = [k for k, t in targets.items() if not bool(t.abs().sum() > 0)]
    if dead:
        raise ValueError(f"the texture's activations are all zero at {dead}; choose other layers")
    res = render(model, gram_match(names, targets, weights), start=start, fill=fill, n=n, shared_noise=False,
                 steps=steps, lr=lr, optimizer=optimizer, clamp=clamp, seed=seed, amp=amp, channels_last=channels_last,
                 show_progress=show_progress, desc=f"texture {'+'.join(names)}")
    return technique_result(TextureResult, res, image=res.image.to(texture.device), layers=names)
