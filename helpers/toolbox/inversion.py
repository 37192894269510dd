"""Feature inversion: which images does a layer consider the same as a given photo?

Mahendran & Vedaldi 2015, "Understanding Deep Image Representations by Inverting Them",
https://arxiv.org/abs/1412.0035: starting from noise, minimize the relative distance of the layer's features
to those of the photo, plus the total-variation prior ``TV^beta`` (and optionally an alpha-norm):
:func:`helpers.render` of :func:`helpers.objectives.feature_match` minus the priors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import as_batch, finite_number, int_pair, positive_int
from ..hooks import TruncatedForward, frozen_eval, model_device
from ..objectives import alpha_norm, feature_match, total_variation
from .engine import NOISE, Fill, LossResult, OptimizerSpec, Start, render, technique_result


@dataclass(kw_only=True)
class InversionResult(LossResult):
    """What :func:`invert_features` returns: a :class:`helpers.RenderResult` (``image``, ``history``, ``score``,
    ``tracked``, ``tracked_score``, ``interrupted``; tensors detached) plus ``layer``, and the loss.

    ``history`` ``(steps, N)`` and ``score`` ``(N,)`` are what the engine maximized without the priors: minus
    the feature loss ``||phi(I) - phi(I0)||^2 / ||phi(I0)||^2``, before each update and of the returned images,
    on the CPU; ``loss`` ``(N,)`` (``= -score``) and ``loss_history`` ``(steps, N)`` (``= -history``) give the
    loss itself; ``tracked["total"]``/``tracked_score["total"]`` the whole objective, priors included.
    ``image`` ``(N, 3, H, W)`` holds the reconstructions, normalized, on the photos' device."""

    layer: str  # dotted layer name


def invert_features(model: nn.Module, image: torch.Tensor, layer: str, *, start: Start | None = None,
                    fill: Fill = NOISE, steps: int = 200, lr: float = 0.05, tv_weight: float = 0.05,
                    beta: float = 2.0, alpha_weight: float = 0.0, alpha: float = 6.0, clamp: bool = True,
                    optimizer: OptimizerSpec = "adam", seed: int = 0, amp: bool = False,
                    channels_last: bool | None = None, show_progress: bool | None = None) -> InversionResult:
    """Reconstruct images from the features of ``layer`` (Mahendran & Vedaldi 2015).

    Each reconstruction ``I`` starts from mid-gray noise (or ``start``) and minimizes

        ``||phi(I) - phi(I0)||^2 / ||phi(I0)||^2 + tv_weight * TV^beta(I) / (H*W)
        + alpha_weight * ||I||_alpha^alpha / (H*W)``

    with ``phi`` the output of ``layer``, ``I0`` the photo and ``TV^beta(I) / (H*W)`` the per-pixel
    :func:`helpers.total_variation` with exponent ``beta`` (both priors per pixel, in normalized units). Early layers
    give back almost the photo; late layers keep what the network needs and lose the rest. Only the layers up to
    ``layer`` run; weights get no gradients; the model and ``image`` are left as found. Paper: https://arxiv.org/abs/1412.0035

    Args:
        model: a CNN taking ImageNet-normalized images.
        image: ``(N, 3, H, W)`` or ``(3, H, W)`` normalized photos (e.g. :func:`helpers.load_image`).
        layer: dotted module name, e.g. ``"features.3"`` (early) or ``"features.29"`` (late).
        start: the start image, as in every ascent: None (default) for the photos' size, a size ``S`` /
            ``(H, W)`` (it must be the photos' size: the features are compared position by position), or
            normalized start images ``(1 or N, 3, H, W)`` of that size.
        fill: the pixel values of a start made from a size: ``(low, high)`` uniform noise (default: mid-gray
            ``(0.4, 0.6)``, :func:`helpers.render`'s) or one value in ``[0, 1]``.
        steps: optimizer steps.
        lr: learning rate of a named optimizer (normalized units).
        tv_weight: weight of the ``TV^beta`` prior (0 = off); deeper layers need more.
        beta: exponent of the TV prior (2 = squared differences; the paper uses 2 for most layers).
        alpha_weight: weight of the alpha-norm prior (0 = off).
        alpha: exponent of the alpha-norm (the paper uses 6).
        clamp: clamp pixels to the displayable range after each step.
        optimizer: ``"adam"``, ``"sgd"`` or a factory ``params -> Optimizer``.
        seed: seeds the start noise (a local generator; one noise image shared by the batch).
        amp: run the network in bfloat16 autocast (the image stays float32).
        channels_last: channels-last convolutions (:mod:`helpers.speed`); None: on the CPU yes, on a GPU no.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`InversionResult`: ``image`` ``(N, 3, H, W)`` on the photos' device; ``history`` ``(steps, N)``
        and ``score`` ``(N,)`` minus the feature loss (``loss_history`` and ``loss`` the loss itself);
        ``interrupted`` True after Ctrl-C; ``layer``.

    Raises:
        ValueError: unknown layer (with close names), bad shape, features all zero for a photo.
        FloatingPointError: the image became NaN/inf.
    """
    image = as_batch(image, model)  # (3, H, W) -> (1, 3, H, W); a grey/RGBA tensor is refused with the conversion
    steps = positive_int(steps, "steps")
    n, _, h, w = image.shape
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        target = forward(image.detach().to(model_device(model), torch.float32))[layer].float()
    dead = (target.flatten(1).abs().sum(dim=1) == 0).nonzero().flatten().tolist()
    if dead:
        raise ValueError(f"the features of {layer!r} are all zero for image(s) {dead}: nothing to invert; "
                         "choose another layer")
    start = (h, w) if start is None else start
    size = tuple(start.shape[-2:]) if isinstance(start, torch.Tensor) else int_pair(start, "start")
    if size != (h, w):
        raise ValueError(f"start must have the photos' size {h}x{w} px (their features are compared position by "
                         f"position), got {size[0]}x{size[1]}; leave start=None for noise of that size")
    fit = feature_match(layer, target)  # minus the relative feature distance
    tv_weight = finite_number(tv_weight, "tv_weight")
    alpha_weight = finite_number(alpha_weight, "alpha_weight")
    objective = fit
    if tv_weight:
        objective = objective - total_variation(tv_weight, beta=beta)
    if alpha_weight:
        objective = objective - alpha_norm(alpha_weight, alpha=alpha)
    res = render(model, objective, start=start, fill=fill, n=n, steps=steps, lr=lr, optimizer=optimizer, clamp=clamp,
                 seed=seed, amp=amp, channels_last=channels_last, track={"score": fit}, show_progress=show_progress,
                 desc=f"invert {layer}")
    return technique_result(InversionResult, res, image=res.image.to(image.device), layer=layer)
