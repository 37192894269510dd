"""Class-score visualization with the L2 prior, and the "L2++" regularizers of Yosinski et al.

``I* = argmax_I S_c(I) - lambda * ||I||^2 / (H*W)`` on the unnormalized class score (the logit), from noise or
from a photo (Simonyan et al. 2014, https://arxiv.org/abs/1312.6034); the loss minimized is exactly
``-S_c(I) + lambda * ||I||^2 / (H*W)``, ``||I||^2`` summed over all pixels and channels in normalized space and
``lambda`` per pixel (the prior is a mean over pixels, so it does not grow with the image size). L2++ adds,
between the ascent steps, Yosinski et al.'s image operations besides the decay: a periodic Gaussian blur,
clipping of pixels with a small norm and of pixels with a small contribution ``|sum_rgb I * dS_c/dI|`` to the
score (Yosinski et al. 2015, "Understanding Neural Networks Through Deep Visualization",
https://arxiv.org/abs/1506.06579). Jitter (random rolls of the image, as in DeepDream and lucent) is NOT one of
their operations: it is a separate option, ``jitter``, off by default. Both functions are :func:`helpers.render`
with the objective ``class_logit(c) - l2(l2_weight, per_pixel=True)`` (or ``channel_mean(layer, c) - ...``,
"maximize activations with L2++") and :class:`L2PlusPlus` as an ``after`` step, which any :func:`helpers.render`
can use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from .._checks import Indices, indices
from ..objectives import Objective, channel_mean, class_logit
from .ascent import AscentResult, with_priors
from .engine import (
    NOISE,
    Fill,
    OptimizerSpec,
    RenderResult,
    Start,
    Step,
    jittered,
    render,
    technique_result,
)


@dataclass(kw_only=True)
class ClassResult(RenderResult):
    """What :func:`visualize_class` returns: a :class:`helpers.RenderResult` (``image``, ``history``, ``score``,
    ``tracked``, ``tracked_score``, ``interrupted``; tensors detached) plus ``classes``.

    ``history`` ``(steps, N)`` and ``score`` ``(N,)`` are the technique's objective without its prior (each
    class's logit) of the jittered image before each update and of the returned image, on the CPU;
    ``tracked["total"]``/``tracked_score["total"]`` the whole objective the engine maximized (minus the L2
    prior). ``image`` ``(N, 3, H, W)`` is normalized, one per class, on the start image's device (the model's for
    a size)."""

    classes: list[int]  # the class of each image


@dataclass
class L2PlusPlus:
    """The image operations of Yosinski et al.'s "L2++" besides the L2 decay: an ``after`` operation of
    :func:`helpers.render`, called as ``ops(img, step) -> img`` after each ascent step.

    0 turns an operation off. Jitter is not among them (see the ``jitter`` option of :func:`visualize_class`).
    The contribution clip needs the gradient ``dS/dI`` of the score alone; ``render`` hands the gradient of the
    whole loss ``-objective`` (:class:`helpers.toolbox.engine.Step`), so ``l2_weight`` must be the per-pixel weight of
    the L2 prior in the objective (``objectives.l2(l2_weight, per_pixel=True)``, 0 for none): then
    ``dS/dI = 2 * l2_weight / (H*W) * I - step.grad`` at the image before the step (any other prior in the
    objective counts as part of the score). :func:`visualize_class` sets it to its own ``l2_weight``.

    Example: ``render(model, class_logit(c) - l2(w, per_pixel=True), after=[L2PlusPlus(l2_weight=w)])``.
    """

    blur_every: int = 4  # blur the image every this many steps
    blur_sigma: float = 0.5  # standard deviation of the Gaussian blur, in pixels
    norm_pct: float = 5.0  # per image: pixels whose RGB norm is below this percentile are set to 0 (the mean colour)
    contrib_pct: float = 5.0  # per image: pixels whose contribution |sum_rgb I * dS/dI| is below this percentile -> 0
    l2_weight: float = 0.0  # the per-pixel weight of the objective's L2 prior (to recover dS/dI for contrib_pct)

    def __post_init__(self) -> None:
        if self.blur_every < 0 or self.blur_sigma <= 0:
            raise ValueError(f"need blur_every >= 0 and blur_sigma > 0; got {self}")
        for name in ("norm_pct", "contrib_pct"):
            if not 0.0 <= getattr(self, name) < 100.0:
                raise ValueError(f"{name} is a percentile in [0, 100), got {getattr(self, name)}")
        if self.l2_weight < 0:
            raise ValueError(f"l2_weight is the per-pixel weight of the objective's L2 prior, >= 0, got "
                             f"{self.l2_weight}")

    @property
    def active(self) -> bool:
        """Whether any operation is on (blur, norm clip or contribution clip)."""
        return bool(self.blur_every or self.norm_pct or self.contrib_pct)

    def __call__(self, img: torch.Tensor, step: Step) -> torch.Tensor:
        """The operations after ascent step ``step.index``, as an ``after`` step of :func:`helpers.render`."""
        score_grad = None
        if self.contrib_pct:  # the loss gradient is -dS/dI + 2 lambda I / (H*W) at the image before the step
            h, w = img.shape[-2:]
            score_grad = 2 * (self.l2_weight / (h * w)) * step.before - step.grad
        return l2pp_step(img, score_grad, step.index, self)


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``(N, 3, H, W)`` images with a Gaussian of std ``sigma`` px (kernel ``2*ceil(3*sigma)+1``, reflect)."""
    radius = min(math.ceil(3 * sigma), min(img.shape[-2:]) - 1)  # reflect padding needs radius < size
    if radius < 1:
        return img
    return TF.gaussian_blur(img, [2 * radius + 1] * 2, [sigma, sigma])


def clip_below_percentile(img: torch.Tensor, score: torch.Tensor, pct: float) -> torch.Tensor:
    """Set every pixel (all channels) whose ``score`` ``(N, H, W)`` is below the image's ``pct``-th percentile to 0.

    0 is the dataset mean colour in normalized space. Returns a new ``(N, 3, H, W)`` tensor.
    """
    threshold = torch.quantile(score.flatten(1).float(), pct / 100.0, dim=1).view(-1, 1, 1)
    return img.masked_fill((score < threshold).unsqueeze(1), 0.0)


def l2pp_step(img: torch.Tensor, grad: torch.Tensor | None, step: int, ops: L2PlusPlus) -> torch.Tensor:
    """Apply the L2++ operations after ascent step ``step`` (0-based): blur, norm clip, contribution clip.

    Args:
        img: ``(N, 3, H, W)`` normalized images.
        grad: ``(N, 3, H, W)`` gradient of the score alone (not of the loss with the L2 term) at this step,
            for the contributions ``|sum_rgb img * grad|``.
        step: the step just taken.
        ops: which operations, see :class:`L2PlusPlus`.

    Returns:
        The new ``(N, 3, H, W)`` images.
    """
    if ops.blur_every and (step + 1) % ops.blur_every == 0:
        img = gaussian_blur(img, ops.blur_sigma)
    if ops.norm_pct:
        img = clip_below_percentile(img, img.norm(dim=1), ops.norm_pct)
    if ops.contrib_pct:
        if grad is None:
            raise ValueError("the contribution clip (contrib_pct > 0) needs the score's gradient")
        img = clip_below_percentile(img, (img * grad).sum(dim=1).abs(), ops.contrib_pct)
    return img


def _ascent(model: nn.Module, start: Start, fill: Fill, score: Objective, targets: list[int], *, steps: int,
            lr: float, l2_weight: float, l2pp: L2PlusPlus | None, jitter: int, clamp: bool,
            optimizer: OptimizerSpec, seed: int, amp: bool, channels_last: bool | None, show_progress: bool | None,
            desc: str) -> RenderResult:
    """:func:`helpers.render` of ``score - l2_weight * ||I||^2 / (H*W)`` with the L2++ operations after each step."""
    if l2_weight < 0:
        raise ValueError(f"l2_weight is the lambda of the L2 prior (per pixel), >= 0 (0 = off), got {l2_weight}")
    objective = with_priors(score, l2_weight=l2_weight)
    after = [] if l2pp is None or not l2pp.active else [replace(l2pp, l2_weight=l2_weight)]
    return render(model, objective, start=start, fill=fill, n=len(targets), steps=steps, lr=lr, optimizer=optimizer,
                  transforms=jittered(jitter), after=after, clamp=clamp, seed=seed, amp=amp,
                  channels_last=channels_last, track=None if objective is score else {"score": score},
                  show_progress=show_progress, desc=desc)


def visualize_class(model: nn.Module, target: Indices, *, start: Start = 224, fill: Fill = NOISE,
                    steps: int = 200, lr: float = 0.05, l2_weight: float = 1e-4 * 224 * 224,
                    l2pp: L2PlusPlus | None = None, jitter: int = 0, clamp: bool = True,
                    optimizer: OptimizerSpec = "adam", seed: int = 0, amp: bool = False,
                    channels_last: bool | None = None, show_progress: bool | None = None) -> ClassResult:
    """Class-score visualization: ``argmax_I S_c(I) - lambda * ||I||^2 / (H*W)`` on the logit ``S_c``, optionally
    with L2++.

    The loss minimized is exactly ``-S_c(I) + l2_weight * ||I||^2 / (H*W)``, the squared norm summed over all
    pixels and channels in normalized space (so the prior pulls towards the dataset mean colour) and its weight
    per pixel, as every ``l2_weight`` of the package: the prior is a mean over pixels, so it does not grow with the
    image size (against a spatially pooled score it weighs the same at any size). With ``l2pp`` (e.g.
    ``L2PlusPlus()``) each step is followed by Yosinski et al.'s image operations (:class:`L2PlusPlus`, with its
    ``l2_weight`` set to this one); the contribution clip uses the gradient of ``S_c`` alone. Several classes are
    optimized as one batch, one image each; every image's result is independent of the others in the batch.
    Weights get no gradients; the model is left as found.
    Paper: https://arxiv.org/abs/1506.06579 (L2++), https://arxiv.org/abs/1312.6034 (L2).

    Args:
        model: a classifier taking ImageNet-normalized ``(N, 3, H, W)`` images, returning ``(N, K)`` logits.
        target: a class index, or several (one image each): an int, a list, an integer tensor or numpy value.
        start: a size ``S`` / ``(H, W)`` for a start image made of ``fill``, or a normalized photo
            ``(1, 3, H, W)`` to start from (e.g. :func:`helpers.load_image`; not modified).
        fill: the pixel values of a start made from a size: ``(low, high)`` uniform noise (default: mid-gray
            ``(0.4, 0.6)``, :func:`helpers.render`'s) or one value in ``[0, 1]``.
        steps: optimizer steps.
        lr: learning rate of a named optimizer (normalized units).
        l2_weight: ``lambda`` of the L2 prior, per pixel (0 = off). The default, ``1e-4 * 224 * 224``, weighs
            as ``1e-4`` on the summed squared norm of a 224 px image.
        l2pp: the L2++ operations, or None for the plain L2 objective.
        jitter: our addition, not part of L2++: roll the image by a random shift of up to this many pixels
            before each forward pass (0 = off).
        clamp: clamp pixels to the displayable range (:func:`helpers.valid_range`) after each step.
        optimizer: ``"adam"``, ``"sgd"`` or a factory ``params -> Optimizer``.
        seed: seeds the start noise and the jitter (a local generator; the global RNG is untouched).
        amp: run the network in bfloat16 autocast (the image stays float32).
        channels_last: channels-last convolutions (:mod:`helpers.speed`); None: on the CPU yes, on a GPU no.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`ClassResult`: ``image`` ``(N, 3, H, W)`` on the start image's device (the model's for a size);
        ``history`` ``(steps, N)`` the logits before each update and ``score`` ``(N,)`` the final logits, without
        the prior (the whole objective in ``tracked["total"]``); ``interrupted`` True after Ctrl-C (the steps so
        far); ``classes``.

    Raises:
        ValueError: class index out of range (with the valid range), bad start.
        FloatingPointError: the image became NaN/inf.
    """
    targets = list(indices(target, "a class"))
    res = _ascent(model, start, fill, class_logit(targets), targets, steps=steps, lr=lr, l2_weight=l2_weight,
                  l2pp=l2pp, jitter=jitter, clamp=clamp, optimizer=optimizer, seed=seed, amp=amp,
                  channels_last=channels_last, show_progress=show_progress, desc=f"class {targets}")
    return technique_result(ClassResult, res, classes=targets)


def visualize_activation(model: nn.Module, layer: str, channel: Indices, *, start: Start = 128,
                         fill: Fill = NOISE, steps: int = 200, lr: float = 0.05, l2_weight: float = 1e-4 * 128 * 128,
                         l2pp: L2PlusPlus | None = None, jitter: int = 0, clamp: bool = True,
                         optimizer: OptimizerSpec = "adam", seed: int = 0, amp: bool = False,
                         channels_last: bool | None = None, show_progress: bool | None = None) -> AscentResult:
    """"Maximize activations with L2++": like :func:`visualize_class` for the mean activation of a channel.

    The loss is ``-mean_{y,x} A_c(I)[y, x] + l2_weight * ||I||^2 / (H*W)`` with ``A`` the output of ``layer``,
    followed by the L2++ operations when ``l2pp`` is given. Only the layers up to ``layer`` run. (Sheet 5's
    :func:`helpers.visualize_filter` is the same objective with TV instead of L2++: with the same ``start``,
    ``fill``, ``steps``, ``lr``, ``l2_weight``, ``jitter``, ``optimizer`` and ``seed`` and no ``l2pp`` both give the
    same image; the defaults of ``steps``, ``fill``, ``lr`` and ``l2_weight`` differ.)
    Paper: https://arxiv.org/abs/1506.06579

    Args:
        model: a CNN taking ImageNet-normalized images.
        layer: dotted module name, e.g. ``"features.28"`` or ``"layer4.1.conv2"``.
        channel: a channel index or several (one image each), as ``target`` of :func:`visualize_class`.
        start: a size ``S`` / ``(H, W)`` for a start image made of ``fill``, or a normalized start photo
            ``(1, 3, H, W)``.
        l2_weight: ``lambda`` of the L2 prior, per pixel (0 = off). The default, ``1e-4 * 128 * 128``, weighs
            as ``1e-4`` on the summed squared norm of a 128 px image.
        fill, steps, lr, l2pp, jitter, clamp, optimizer, seed, amp, channels_last, show_progress: as in
            :func:`visualize_class`.

    Returns:
        :class:`helpers.AscentResult`: ``image`` ``(N, 3, H, W)``; ``history`` ``(steps, N)`` and ``score``
        ``(N,)`` each channel's mean activation without the prior (the whole objective in ``tracked["total"]``);
        ``interrupted``; ``layer``; ``channels``.

    Raises:
        ValueError: unknown layer (with close names), channel out of range (with the valid range), bad start.
        FloatingPointError: the image became NaN/inf.
    """
    channels = list(indices(channel, "a channel"))
    res = _ascent(model, start, fill, channel_mean(layer, channels), channels, steps=steps, lr=lr,
                  l2_weight=l2_weight, l2pp=l2pp, jitter=jitter, clamp=clamp, optimizer=optimizer, seed=seed,
                  amp=amp, channels_last=channels_last, show_progress=show_progress,
                  desc=f"{layer} x{len(channels)}")
    return technique_result(AscentResult, res, layer=layer, channels=channels)
