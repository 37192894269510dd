"""Class-score visualization with the L2 prior, optionally with the "L2++" operations of Yosinski et al.

``I* = argmax_I S_c(I) - lambda * ||I||^2 / (H*W)`` on the unnormalized class score (the logit), from noise or
from a photo (Simonyan et al. 2014, https://arxiv.org/abs/1312.6034); the loss minimized is exactly
``-S_c(I) + lambda * ||I||^2 / (H*W)``, ``||I||^2`` summed over all pixels and channels in normalized space and
``lambda`` per pixel (the prior is a mean over pixels, so it does not grow with the image size). L2++ adds,
between the ascent steps, Yosinski et al.'s image operations besides the decay: a periodic Gaussian blur,
clipping of pixels with a small norm and of pixels with a small contribution ``|sum_rgb I * dS_c/dI|`` to the
score (Yosinski et al. 2015, "Understanding Neural Networks Through Deep Visualization",
https://arxiv.org/abs/1506.06579). Jitter (random rolls of the image, as in DeepDream and lucent) is NOT one of
their operations: it is a separate option, ``jitter``, off by default. :func:`visualize_class` is
:func:`helpers.render` with the objective ``class_logit(c) - l2(l2_weight)`` and
:class:`helpers.L2PlusPlus` (:mod:`helpers.toolbox.ascent`, where ``visualize_filter(..., l2pp=)`` maximizes a
channel the same way) as an ``after`` step.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .._checks import Indices, indices
from ..objectives import class_logit
from .ascent import L2PlusPlus, l2pp_after, with_priors
from .engine import NOISE, Fill, OptimizerSpec, RenderResult, Start, jittered, render, technique_result


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
    score = class_logit(targets)
    after = l2pp_after(l2pp, l2_weight)
    objective = with_priors(score, l2_weight=l2_weight)
    res = render(model, objective, start=start, fill=fill, n=len(targets), steps=steps, lr=lr, optimizer=optimizer,
                 transforms=jittered(jitter), after=after, clamp=clamp, seed=seed, amp=amp,
                 channels_last=channels_last, track=None if objective is score else {"score": score},
                 show_progress=show_progress, desc=f"class {targets}")
    return technique_result(ClassResult, res, classes=targets)
