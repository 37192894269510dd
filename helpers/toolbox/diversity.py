"""Diverse feature visualization: a batch of images for one channel that show different facets.

Olah, Mordvintsev & Schubert 2017, "Feature Visualization", section "Diversity",
https://distill.pub/2017/feature-visualization/#diversity: the objective of the batch gets a penalty on the
pairwise cosine similarity of the images' flattened Gram matrices (their "style"), so the images cannot all
settle on the same pattern. :func:`helpers.render` of ``channel_mean + diversity_weight * diversity`` (minus the
priors), see :mod:`helpers.objectives`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import index, positive_int
from ..hooks import TruncatedForward, frozen_eval, model_device
from ..objectives import channel_mean, diversity, gram_similarity
from .ascent import with_priors
from .engine import NOISE, Fill, OptimizerSpec, RenderResult, Start, jittered, render, technique_result


def mean_pairwise(similarity: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of an ``(N, N)`` matrix (0 for ``N = 1``). Scalar."""
    n = similarity.shape[0]
    if n < 2:
        return similarity.new_zeros(())
    return (similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1))


@dataclass(kw_only=True)
class DiversityResult(RenderResult):
    """What :func:`visualize_diverse` returns: a :class:`helpers.RenderResult` (``image``, ``history``, ``score``,
    ``tracked``, ``tracked_score``, ``interrupted``; tensors detached) plus the similarities, ``layer`` and
    ``channels``.

    ``history`` ``(steps, N)`` and ``score`` ``(N,)`` are the technique's objective without its priors and
    without the diversity term (the channel's mean activation) before each update and of the returned images, on
    the CPU; ``tracked["total"]``/``tracked_score["total"]`` the whole objective the engine maximized.
    ``image`` ``(N, 3, H, W)`` is normalized, on the start tensor's device (the model's for a start made from a
    size)."""

    similarity: torch.Tensor  # (steps,) mean pairwise Gram similarity before each update, CPU
    final_similarity: torch.Tensor  # (N, N) Gram similarity of the returned images, CPU
    layer: str  # dotted layer name of the channel
    channels: list[int]  # the channel of each image (the same one for all)


def visualize_diverse(model: nn.Module, layer: str, channel: int, *, start: Start = 128,
                      fill: Fill = NOISE, n: int = 4, diversity_weight: float = 1.0,
                      diversity_layer: str | None = None, steps: int = 200, lr: float = 0.05,
                      tv_weight: float = 0.0, l2_weight: float = 0.0, jitter: int = 0, clamp: bool = True,
                      optimizer: OptimizerSpec = "adam", seed: int = 0, amp: bool = False,
                      channels_last: bool | None = None, show_progress: bool | None = None) -> DiversityResult:
    """Optimize a batch of ``n`` images for one channel, with a Gram-matrix diversity penalty.

    The loss minimized is

        ``-sum_i mean_{y,x} A_c(I_i) + diversity_weight * sum_{i != j} cos(G_i, G_j) / n
        + tv_weight * TV(I) / (H*W) + l2_weight * ||I||^2 / (H*W)``

    with ``A`` the output of ``layer``, ``G_i`` the flattened :func:`helpers.gram_matrix` of image ``i`` at
    ``diversity_layer`` (default ``layer``) and TV Eq. (1) of sheet 5, both priors per pixel (as every
    ``tv_weight`` and ``l2_weight`` of the package). The images start from independent noise.
    ``diversity_weight=0`` is plain activation maximization of ``n`` images. Only the layers up to the deeper
    of the two run; weights get no gradients; the model is left as found.
    Paper: https://distill.pub/2017/feature-visualization/#diversity

    Args:
        model: a CNN taking ImageNet-normalized images.
        layer: dotted module name of the channel.
        channel: channel index.
        start: a size ``S`` / ``(H, W)`` for ``n`` independent start images made of ``fill``, or normalized start
            images ``(1 or n, 3, H, W)``.
        fill: the pixel values of a start made from a size: ``(low, high)`` uniform noise (default: mid-gray
            ``(0.4, 0.6)``, :func:`helpers.render`'s) or one value in ``[0, 1]``.
        n: batch size (number of facets, >= 2).
        diversity_weight: weight of the similarity penalty; the activation's scale sets how much is needed.
        diversity_layer: layer whose Gram matrices are compared (default ``layer``; the paper uses an earlier one).
        steps: optimizer steps.
        lr: learning rate of a named optimizer (normalized units).
        tv_weight: weight of the total-variation prior, per pixel (0 = off).
        l2_weight: weight of the squared-L2 prior, per pixel (0 = off).
        jitter: roll the batch by a random shift in ``[-jitter, jitter]`` px before each forward pass.
        clamp: clamp pixels to the displayable range after each step.
        optimizer: ``"adam"``, ``"sgd"`` or a factory ``params -> Optimizer``.
        seed: seeds the start noise and the jitter (a local generator).
        amp: run the network in bfloat16 autocast (the image stays float32).
        channels_last: channels-last convolutions (:mod:`helpers.speed`); None: on the CPU yes, on a GPU no.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`DiversityResult`: ``image`` ``(n, 3, H, W)``; ``history`` ``(steps, n)`` and ``score`` ``(n,)``
        the channel's mean activation (without the diversity term and the priors: the whole objective is in
        ``tracked["total"]``); ``interrupted`` True after Ctrl-C; ``similarity`` ``(steps,)``, the final
        ``(n, n)`` ``final_similarity``; ``layer``; ``channels`` (``[channel] * n``).

    Raises:
        ValueError: unknown layer (with close names), channel out of range (with the valid range), ``n < 2``.
        FloatingPointError: the image became NaN/inf.
    """
    channel = index(channel, "channel")
    n = positive_int(n, "n (the number of images; diversity is between them)", minimum=2)
    steps = positive_int(steps, "steps")
    style = layer if diversity_layer is None else diversity_layer
    score = channel_mean(layer, channel)
    similar = diversity(style)  # image i: -sum_{j != i} cos(G_i, G_j) / n
    objective = with_priors(score + diversity_weight * similar, tv_weight=tv_weight, l2_weight=l2_weight)
    res = render(model, objective, start=start, fill=fill, n=n, shared_noise=False, steps=steps, lr=lr,
                 optimizer=optimizer, transforms=jittered(jitter), clamp=clamp, seed=seed, amp=amp,
                 channels_last=channels_last, track={"score": score, "similar": similar}, show_progress=show_progress,
                 desc=f"diverse {layer}:{channel} x{n}")
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, style) as forward:
        final_sim = gram_similarity(forward(res.image.to(model_device(model)))[style])
    mean_similarity = -res.tracked["similar"].sum(dim=1) / (n - 1)  # mean_pairwise of each step's matrix
    return technique_result(DiversityResult, res, similarity=mean_similarity, final_similarity=final_sim.cpu(),
                            layer=layer, channels=[channel] * n)
