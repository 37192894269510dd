"""DeepDream: amplify whatever a photo already excites in one or several layers.

Mordvintsev, Olah & Tyka 2015, "Inceptionism: Going Deeper into Neural Networks",
https://research.google/blog/inceptionism-going-deeper-into-neural-networks/

An octave loop over :func:`helpers.render`: the objective :func:`helpers.objectives.layer_rms`, the jitter
transform, and DeepDream's normalized step as the optimizer (:class:`DreamStep`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_batch, finite_number, image_too_small, positive_int
from ..hooks import deepest_layer, model_device
from ..images import valid_range
from ..objectives import layer_rms, per_layer_weights
from ..receptive import smallest_input
from ..regularizers import total_variation
from ..speed import lean_loop
from .engine import RenderResult, Transform, jitter, objective_score, render


@dataclass(kw_only=True)
class DreamResult(RenderResult):
    """What :func:`deep_dream` returns: a :class:`helpers.RenderResult` (``image``, ``history``, ``score``,
    ``interrupted``; tensors detached, on the CPU except ``image``) plus the octaves and ``layers``.

    ``history`` ``((octaves run) * steps, N)`` is the objective (:func:`helpers.objectives.layer_rms`, there are
    no priors) of the jittered image before each step, the octaves one after the other (``octave_history``
    splits it); ``score`` ``(N,)`` the objective of the returned images; ``interrupted`` True when Ctrl-C
    stopped the dream (the octaves so far, their detail carried to the photo's size). ``image`` ``(N, 3, H, W)``
    is normalized, on the input's device."""

    sizes: list[tuple[int, int]]  # (H, W) of each octave run, smallest first
    octave_history: list[torch.Tensor]  # per octave run: (steps, N) rows of `history`
    octave_start: torch.Tensor  # (octaves run, N) objective at the start of each octave (no jitter)
    octave_end: torch.Tensor  # (octaves run, N) objective at the end of each octave (no jitter)
    layers: list[str]  # the dotted layer names whose activations were amplified


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


DREAM_LAYERS = ("features.11", "features.20", "features.27")
"""The default layers: the ReLU outputs of conv3_1, conv4_2 and conv5_2 of torchvision's VGG16."""


def _normalized(g: torch.Tensor) -> torch.Tensor:
    """``g`` divided by its mean absolute value per image (``(N, ...)``), so its mean absolute value is 1."""
    return g / g.abs().mean(dim=tuple(range(1, g.dim())), keepdim=True).add_(1e-12)


class DreamStep(torch.optim.Optimizer):
    """DeepDream's update as an optimizer: ``p += lr * (g / mean|g| - tv_step * g_TV / mean|g_TV|)``.

    ``g`` is the gradient of the score (minus the gradient stored in ``p.grad``, which is that of the loss),
    normalized per image, so ``lr`` is the mean change per pixel; ``g_TV`` is the gradient of
    :func:`helpers.total_variation` at ``p``, the smoothing step relative to the ascent step.
    """

    def __init__(self, params, lr: float, tv_step: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "tv_step": tv_step})

    def step(self, closure=None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                ascent = _normalized(-p.grad)
                if group["tv_step"]:  # Eq. (1) on the unrolled image: the roll's wrap-around seam is no edge
                    with torch.enable_grad():
                        smooth = p.detach().requires_grad_(True)
                        (tv_grad,) = torch.autograd.grad(total_variation(smooth).sum(), smooth)
                    ascent = ascent - group["tv_step"] * _normalized(tv_grad)
                with torch.no_grad():
                    p.copy_(p + group["lr"] * ascent)


def jittered_first_unrolled(pixels: int) -> list[Transform]:
    """DeepDream's jitter: a random roll of up to ``pixels`` before each step but the first of an octave."""
    return [jitter(pixels, unrolled_first=True)] if pixels else []


def deep_dream(model: nn.Module, image: torch.Tensor, layers: str | Sequence[str] | None = None, *,
               steps: int = 10, lr: float = 0.02, octaves: int = 3, octave_scale: float = 1.4, jitter: int = 16,
               tv_step: float = 0.0, layer_weights: Sequence[float] | None = None, clamp: bool = True,
               seed: int = 0, amp: bool = False, channels_last: bool | None = None,
               show_progress: bool | None = None) -> DreamResult:
    """DeepDream: gradient ascent on a photo to raise the L2 norm of the activations of ``layers``.

    The objective of an image is ``sum_l w_l * ||A_l||_2 / sqrt(numel(A_l))`` (each layer's L2 norm divided by
    the square root of its size, i.e. its root-mean-square activation, so that layers and octaves of
    different sizes weigh alike). As in the original method the layers should be ReLU outputs
    (:data:`DREAM_LAYERS` for VGG16): the norm then grows only where units fire, which amplifies what the
    network already responds to; on a convolution's output before its ReLU, the norm also grows by pushing
    negative responses further down.
    The total-variation prior, Eq. (1) of sheet 5, enters as a second normalized gradient, taken on the
    unrolled image (so the jitter's wrap-around seam is not smoothed): each step is
    ``lr * (g / mean|g| - tv_step * g_TV / mean|g_TV|)``, so ``tv_step`` is the size of the smoothing step
    relative to the ascent step and means the same for every network, layer and octave.
    The classic tricks of the original code: the image is processed at ``octaves`` scales, smallest first, and
    the detail added at one scale is carried (upsampled) to the next; before each step the image is rolled by a
    random shift of up to ``jitter`` px (and the gradient rolled back; the first step of an octave is not
    rolled, so its score is the octave's start objective); the gradient is normalized by its mean
    absolute value (per image), so ``lr`` is the mean change per pixel; pixels are
    clamped to the displayable range. Only the layers up to the deepest target run, the weights get no
    gradients, and the model and the input tensor are left as found.

    Args:
        model: a CNN taking ImageNet-normalized images.
        image: ``(N, 3, H, W)`` or ``(3, H, W)`` normalized photos (e.g. :func:`helpers.load_image`); not
            modified.
        layers: one dotted layer name or several (their objectives are added); None: :data:`DREAM_LAYERS`,
            the ReLU outputs of VGG16's conv3_1, conv4_2 and conv5_2.
        steps: ascent steps per octave.
        lr: step size in normalized units (the normalized gradient has mean absolute value 1).
        octaves: number of scales; octave ``k`` (from the top) has the size ``(H, W) / octave_scale**k``.
        octave_scale: size ratio between neighbouring octaves.
        jitter: largest random roll in pixels (0 = off).
        tv_step: size of the total-variation smoothing step relative to the ascent step (0 = off; 0.3-1 is
            a visible effect). Not a loss weight (``tv_weight`` of :func:`helpers.visualize_filter`), hence the name.
        layer_weights: the per-layer weights ``w_l``, one per layer (default all 1; the ``weights`` of
            :func:`helpers.objectives.layer_rms`).
        clamp: clamp the pixels to :func:`helpers.valid_range` after each step.
        seed: seeds the jitter (a local generator; the global RNG is untouched).
        amp: run the network in bfloat16 autocast (the image stays float32).
        channels_last: channels-last convolutions (:mod:`helpers.speed`); None: on the CPU yes, on a GPU no.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`DreamResult`: the image ``(N, 3, H, W)`` (``(1, 3, H, W)`` for one ``(3, H, W)`` photo) on the
        photo's device; ``history`` (all octaves' steps, ``octave_history`` per octave) and ``score`` ``(N,)``
        the objective of the returned images (no priors); ``octave_start``/``octave_end`` per octave. After
        Ctrl-C (KeyboardInterrupt) no further octave runs: the result holds the octaves so far (the interrupted
        one with the steps it made), their detail carried to the photo's size, and ``interrupted=True``, with a
        warning; an interrupt before the first step of the first
        octave has finished is raised as usual.

    Raises:
        ValueError: unknown layer name (with close names), default layers that are not ReLUs of ``model``,
            ``steps``/``octaves`` not an integer >= 1, ``octave_scale`` <= 1, a smallest octave too small for the
            deepest layer (naming how many octaves fit and the photo size that works).
        FloatingPointError: the image became NaN/inf.
    """
    if layers is None:
        modules = dict(model.named_modules())
        if not all(isinstance(modules.get(name), nn.ReLU) for name in DREAM_LAYERS):
            raise ValueError(f"layers=None means VGG16's ReLU outputs {list(DREAM_LAYERS)}, which "
                             f"{type(model).__name__} lacks: pass layers=, e.g. ReLU names from "
                             "helpers.layer_names(model)")
        layers = DREAM_LAYERS
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("layers=[] names no layer to amplify: pass one dotted layer name or several, e.g. ReLU "
                         "names from helpers.layer_names(model), or None for DREAM_LAYERS")
    tv_step = finite_number(tv_step, "tv_step")
    weights = per_layer_weights(names, layer_weights, "layer_weights")
    image = as_batch(image, model)
    positive_int(steps, "steps")
    positive_int(octaves, "octaves")
    if isinstance(octave_scale, bool) or not isinstance(octave_scale, int | float) or octave_scale <= 1.0:
        raise ValueError(f"octave_scale is the size ratio between octaves, a number > 1, got {octave_scale!r}")
    device = model_device(model)
    base = image.detach().to(device=device, dtype=torch.float32)
    h, w = base.shape[-2:]
    sizes = octave_sizes((h, w), octaves, octave_scale)
    fix = check_octaves(model, names, (h, w), octaves, octave_scale)
    generator = torch.Generator().manual_seed(seed)  # one generator for the jitter of all octaves
    low, high = valid_range(base)
    objective = layer_rms(names, weights)

    histories, starts, ends = [], [], []
    detail = base.new_zeros(base.shape[0], 3, *sizes[0])
    interrupted = False
    # once for all octaves (the renders' own blocks then do nothing)
    with lean_loop(model, channels_last, device, objective.layers):
        for k, size in enumerate(sizes):
            octave_base = _resize(base, size)
            start = octave_base + _resize(detail, size)  # the detail added so far, carried to this scale
            try:
                res = render(model, objective, start=start.clamp(low, high) if clamp else start, steps=steps,
                             lr=lr, optimizer=lambda params: DreamStep(params, lr, tv_step),
                             transforms=jittered_first_unrolled(jitter), clamp=clamp, seed=generator, amp=amp,
                             channels_last=channels_last, show_progress=show_progress, too_small_fix=fix,
                             desc=f"deep dream {'+'.join(names)} octave {k + 1}/{octaves}")
            except KeyboardInterrupt:  # Ctrl-C before the octave's first step ended: keep the octaves so far
                if k == 0:
                    raise
                warnings.warn(f"interrupted (Ctrl-C) in octave {k + 1} of {octaves} before its first step ended: "
                              f"returning the {k} octave(s) dreamed so far", stacklevel=2)
                interrupted = True
                break
            histories.append(res.history)
            starts.append(res.history[0])  # the first step is not rolled: the octave's start objective
            ends.append(res.score)
            detail = res.image - octave_base
            if res.interrupted:  # Ctrl-C during this octave (render warned): no further octave
                interrupted = True
                break
    if tuple(res.image.shape[-2:]) == (h, w):
        dreamed, score = res.image, res.score
    else:  # interrupted before the last octave: the detail so far, carried to the photo's size
        dreamed = base + _resize(detail, (h, w))
        dreamed = dreamed.clamp(low, high) if clamp else dreamed
        score = objective_score(model, dreamed, objective).cpu()
    return DreamResult(image=dreamed.to(image.device), history=torch.cat(histories), score=score,
                       interrupted=interrupted, sizes=sizes[:len(histories)], octave_history=histories,
                       octave_start=torch.stack(starts), octave_end=torch.stack(ends), layers=names)


def octave_sizes(size: tuple[int, int], octaves: int, octave_scale: float) -> list[tuple[int, int]]:
    """The ``(H, W)`` of each octave of an image of ``size``, smallest first: ``size / octave_scale**k``."""
    h, w = size
    return [(max(1, round(h / octave_scale**k)), max(1, round(w / octave_scale**k))) for k in range(octaves)][::-1]


def check_octaves(model: nn.Module, layers: Sequence[str], size: tuple[int, int], octaves: int,
                  octave_scale: float) -> str:
    """``ValueError`` naming the fix when the smallest octave of a photo of ``size`` is too small for the deepest of
    ``layers`` (:func:`helpers.receptive.smallest_input`; skipped for a geometry it cannot fold). Returns the fix
    text (with ``{n}``) for an error that only the forward pass finds."""
    deepest = deepest_layer(model, layers)
    fix = ("use fewer octaves, a smaller octave_scale or a larger photo (the smallest octave is the photo divided "
           f"by octave_scale**(octaves - 1) = {octave_scale:g}**{octaves - 1})")
    try:
        smallest = smallest_input(model, deepest)
    except ValueError:  # unknown layer (render names the close ones) or a geometry torch.fx cannot fold
        return fix
    sizes = octave_sizes(size, octaves, octave_scale)
    if min(sizes[0]) >= smallest:
        return fix
    fitting = sum(min(s) >= smallest for s in sizes)
    need = math.ceil(smallest * octave_scale ** (octaves - 1))
    if fitting == 0:
        remedy = f"pass a photo of at least {need}x{need} px"
    else:
        remedy = (f"use octaves={fitting} or fewer, a smaller octave_scale, or a photo of at least {need}x{need} px "
                  f"for octaves={octaves}")
    raise image_too_small(deepest, sizes[0], smallest, fix=remedy,
                          subject=f"the smallest octave, {sizes[0][0]}x{sizes[0][1]} px of the {size[0]}x{size[1]} "
                                  f"px photo,")
