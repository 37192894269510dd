"""Gradient ascent on the input: filter visualization with its priors, L2++, and the filters a photo excites most.

:func:`visualize_filter` is :func:`helpers.render` with the objective ``channel_mean(layer, c)`` minus the
priors (total variation, squared L2) and, optionally, Yosinski et al.'s L2++ image operations (:class:`L2PlusPlus`)
after each step, which :func:`helpers.visualize_class` and any :func:`helpers.render` use too. The engine
(truncated forward pass, frozen weights, lean loop) lives in :mod:`helpers.toolbox.engine` and :mod:`helpers.hooks`.

References: Erhan et al. 2009 (activation maximization); Olah et al. 2017, "Feature Visualization",
https://distill.pub/2017/feature-visualization/; Mahendran & Vedaldi 2015 (total variation prior),
https://arxiv.org/abs/1412.0035; Yosinski et al. 2015, "Understanding Neural Networks Through Deep Visualization"
(L2++), https://arxiv.org/abs/1506.06579.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from .._checks import Indices, as_batch, finite_number, indices, not_a_channel_layer, positive_int
from ..hooks import TruncatedForward, frozen_eval, model_device
from ..objectives import Objective, channel_mean, l2, total_variation
from .engine import NOISE, Fill, OptimizerSpec, RenderResult, Start, Step, jittered, render, technique_result


def with_priors(score: Objective, *, tv_weight: float = 0.0, l2_weight: float = 0.0) -> Objective:
    """``score - tv_weight * TV(I) / (H*W) - l2_weight * ||I||^2 / (H*W)``, both priors per pixel (their weights
    do not depend on the image size), leaving out zero-weight terms; a non-finite weight is a ``ValueError``."""
    tv_weight = finite_number(tv_weight, "tv_weight")
    l2_weight = finite_number(l2_weight, "l2_weight")
    objective = score
    if tv_weight:
        objective = objective - total_variation(tv_weight)
    if l2_weight:
        objective = objective - l2(l2_weight)
    return objective


@dataclass
class L2PlusPlus:
    """The image operations of Yosinski et al.'s "L2++" besides the L2 decay: an ``after`` operation of
    :func:`helpers.render`, called as ``ops(img, step) -> img`` after each ascent step.

    0 turns an operation off. Jitter is not among them (see the ``jitter`` option of :func:`visualize_filter`).
    The contribution clip needs the gradient ``dS/dI`` of the score alone; ``render`` hands the gradient of the
    whole loss ``-objective`` (:class:`helpers.toolbox.engine.Step`), so ``l2_weight`` must be the per-pixel weight of
    the L2 prior in the objective (``objectives.l2(l2_weight)``, 0 for none): then
    ``dS/dI = 2 * l2_weight / (H*W) * I - step.grad`` at the image before the step (any other prior in the
    objective counts as part of the score). ``l2pp=`` of :func:`visualize_filter` and :func:`helpers.visualize_class`
    sets it to their own ``l2_weight``.

    Example: ``render(model, class_logit(c) - l2(w), after=[L2PlusPlus(l2_weight=w)])``.
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


def l2pp_after(l2pp: L2PlusPlus | None, l2_weight: float) -> list[L2PlusPlus]:
    """The ``after`` list of an ascent with ``l2pp=``: the L2++ operations with the ascent's own per-pixel
    ``l2_weight`` (to recover the score's gradient), or ``[]`` without them; a negative weight is a ``ValueError``."""
    if l2_weight < 0:
        raise ValueError(f"l2_weight is the lambda of the L2 prior (per pixel), >= 0 (0 = off), got {l2_weight}")
    return [] if l2pp is None or not l2pp.active else [replace(l2pp, l2_weight=l2_weight)]


@dataclass(kw_only=True)
class AscentResult(RenderResult):
    """What :func:`visualize_filter` returns: a :class:`helpers.RenderResult`
    (``image``, ``history``, ``score``, ``tracked``, ``tracked_score``, ``interrupted``; tensors detached) plus
    ``layer`` and ``channels``.

    ``history`` ``(steps, N)`` and ``score`` ``(N,)`` are the technique's objective without its priors (each
    channel's mean activation) of the jittered image before each update and of the returned image, on the CPU;
    ``tracked["total"]``/``tracked_score["total"]`` the whole objective the engine maximized, priors included.
    ``image`` ``(N, 3, H, W)`` is ImageNet-normalized like :func:`helpers.load_image`, one per channel, on the
    start image's device (the model's for a start made from a size)."""

    layer: str  # dotted layer name
    channels: list[int]  # the channel of each image


def visualize_filter(model: nn.Module, layer: str, channel: Indices, *, start: Start = 128,
                     fill: Fill = NOISE, steps: int = 100, lr: float = 0.1, optimizer: OptimizerSpec = "adam",
                     tv_weight: float = 0.0, l2_weight: float = 0.0, l2pp: L2PlusPlus | None = None,
                     jitter: int = 0, clamp: bool = True, seed: int = 0, amp: bool = False,
                     channels_last: bool | None = None, show_progress: bool | None = None) -> AscentResult:
    """Find input images that maximize the mean activation of one or several channels of a layer.

    Gradient ascent on the pixels (activation maximization): :func:`helpers.render` of the objective
    ``channel_mean(layer, channel) - total_variation(tv_weight) - l2(l2_weight)``
    (:mod:`helpers.objectives`), so with the same seed and settings (start, fill, steps, lr, optimizer, jitter) both
    give the same image. For each channel ``c`` the
    loss minimized is

        ``-mean_{y,x} A[c, y, x] + tv_weight * TV(I) / (H*W) + l2_weight * ||I||^2 / (H*W)``

    with ``A`` the output of ``layer`` and ``TV`` Eq. (1) of sheet 5 (``TV(I) / (H*W)`` is
    :func:`helpers.total_variation`); both priors are per pixel, as in every ascent: means over pixels, so they do
    not grow with the image size. With ``l2pp`` (e.g. ``L2PlusPlus()``, Yosinski et al.'s "maximize activations with
    L2++") each step is followed by the L2++ image operations, as in :func:`helpers.visualize_class`. Several
    channels are optimized as one batch, one image per channel; all images start from the same start image and
    share the jitter, so a channel's result does not depend on which channels share its batch. Only the layers up to
    ``layer`` run and no weight gradients are built; when ``layer`` is a convolution, only its requested channels
    are computed. The model's flags, weights and ``.grad`` are left as found.

    Args:
        model: a CNN taking ImageNet-normalized ``(N, 3, H, W)`` images.
        layer: dotted module name, e.g. ``"features.28"`` (see :func:`helpers.layer_names`).
        channel: a channel index, or several (one image each): an int, a list, an integer tensor or numpy value,
            e.g. a row ``idx[0]`` of ``top_filters(...).indices``.
        start: the start image, as in every ascent: a size ``S`` / ``(H, W)`` for an image made of ``fill``, or a
            normalized image ``(1 or N, 3, H, W)`` (e.g. :func:`helpers.load_image`; copied, not modified).
        fill: the pixel values (in ``[0, 1]``, before normalization) of a start made from a size: a number ``v``
            for a constant image (``128 / 255`` for the sheet's "image filled with 128") or ``(low, high)`` for
            uniform noise. The default is every ascent's, :func:`helpers.render`'s mid-gray ``(0.4, 0.6)``; the
            course code's start is ``fill=(150 / 255, 180 / 255)``.
        steps: number of optimizer steps.
        lr: learning rate of a named optimizer, in normalized units (1 pixel step of 1.0 is about 4.4 units).
        optimizer: ``"adam"``, ``"sgd"``, or a factory ``params -> torch.optim.Optimizer``.
        tv_weight: weight of the total-variation prior, per pixel (0 = off).
        l2_weight: weight of the squared-L2 prior, per pixel (0 = off).
        l2pp: the L2++ operations after each step (:class:`L2PlusPlus`, its ``l2_weight`` set to this one), or
            None.
        jitter: roll the image by a random shift in ``[-jitter, jitter]`` px before each forward pass.
        clamp: clamp the pixels to the displayable range (:func:`helpers.valid_range`) after each step (the
            default, as everywhere in the package; False lets an SGD step at a huge learning rate leave the range).
        seed: seeds the start noise and the jitter (a local generator; the global RNG is untouched).
        amp: run the network in bfloat16 autocast (faster on CPUs with bf16 support; the image stays float32).
        channels_last: run the convolutions in channels-last memory format (:mod:`helpers.speed`); None: on
            the CPU yes, on a GPU no. The same arithmetic in another order: results agree to float rounding.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`AscentResult`: ``image`` ``(N, 3, H, W)`` (on the start tensor's device, else the model's);
        ``history`` ``(steps, N)`` and ``score`` ``(N,)`` each channel's mean activation without the priors
        (the whole objective in ``tracked["total"]``); ``interrupted`` True after Ctrl-C (the steps so far);
        ``layer``; ``channels``.

    Raises:
        ValueError: unknown layer (with close names), channel out of range (with the valid range), bad start.
        FloatingPointError: the image became NaN/inf (learning rate too high).
    """
    channels = list(indices(channel, "a channel"))
    score = channel_mean(layer, channels)
    objective = with_priors(score, tv_weight=tv_weight, l2_weight=l2_weight)
    after = l2pp_after(l2pp, l2_weight)
    res = render(model, objective, start=start, fill=fill, n=len(channels), steps=steps, lr=lr, optimizer=optimizer,
                 transforms=jittered(jitter), after=after, clamp=clamp, seed=seed, amp=amp, channels_last=channels_last,
                 show_progress=show_progress, track=None if objective is score else {"score": score},
                 desc=f"{layer} x{len(channels)}")
    return technique_result(AscentResult, res, layer=layer, channels=channels)


def top_filters(model: nn.Module, image: torch.Tensor, layer: str, k: int = 10, *,
                reduce: str = "mean") -> torch.return_types.topk:
    """The ``k`` channels of ``layer`` that ``image`` activates most, as ``(values, indices)`` like ``torch.topk``.

    Each channel is scored by its mean activation over all spatial positions (``reduce="max"``: its largest
    activation), computed from the whole activation tensor of one truncated forward pass, without
    gradients. Channels are ranked by score, highest first.

    Args:
        model: a CNN taking ImageNet-normalized images.
        image: ``(N, 3, H, W)`` or ``(3, H, W)`` normalized images (e.g. from :func:`helpers.load_image`); not
            modified.
        layer: dotted module name.
        k: how many channels.
        reduce: ``"mean"`` or ``"max"`` over space.

    Returns:
        ``(values, indices)`` (``torch.topk``'s order and names), both ``(N, k)`` (``(1, k)`` for one
        ``(3, H, W)`` image): float scores and long channel indices, on the image's device.
    """
    x = as_batch(image, model)
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        acts = forward(x.to(model_device(model)))[layer].float()
    if acts.dim() != 4:
        raise not_a_channel_layer(model, layer, tuple(acts.shape))
    if not 1 <= positive_int(k, "k") <= acts.shape[1]:
        raise ValueError(f"k must be between 1 and {acts.shape[1]} (the channels of {layer!r}), got {k}")
    scores = acts.mean(dim=(-2, -1)) if reduce == "mean" else acts.amax(dim=(-2, -1))
    top = scores.topk(k, dim=1)
    return torch.return_types.topk((top.values.to(image.device), top.indices.to(image.device)))
