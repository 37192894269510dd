"""Fooling (adversarial) images: tiny changes of a correctly classified photo that flip the model's answer.

Both attacks work on pixels in [0, 1] (the model still sees normalized images), so step sizes, ``epsilon``
and the reported perturbation norms are in pixel units: ``1/255`` is one grey level.

References: Szegedy et al. 2014, "Intriguing properties of neural networks", https://arxiv.org/abs/1312.6199;
Goodfellow et al. 2015 (FGSM), https://arxiv.org/abs/1412.6572.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_batch, check_logits, positive_int
from ..hooks import explain_small_image, frozen_eval
from ..images import IMAGENET_STD, denormalize, normalize
from ..objectives import LOGITS, Objective, Target, class_logit, class_probability, target_indices
from .engine import TOTAL, RenderResult, Step, StopRender, render

RANGE_TOLERANCE = 1e-4  # how far outside [0, 1] a denormalized input pixel may be (float round-off)


@dataclass(kw_only=True)
class FoolingResult(RenderResult):
    """What :func:`fooling_image` returns: a :class:`helpers.RenderResult` (``image``; ``history`` ``(T, N)`` and
    ``score`` ``(N,)``, the target's logit before each step and of the returned images, on the CPU, also as
    ``tracked["total"]``; ``interrupted``; the target's probability and whether the model predicts it under
    ``tracked``/``tracked_score`` ``"probability"``, ``"fooled"``) plus the fields below, on the image's device;
    ``N`` = batch size, ``T`` the steps made."""

    original: torch.Tensor    # (N, 3, H, W) the input images (a detached copy)
    target: torch.Tensor      # (N,) the target classes
    fooled: torch.Tensor      # (N,) bool: the model now predicts the target
    steps: torch.Tensor       # (N,) number of update steps applied to each image
    l2: torch.Tensor          # (N,) L2 norm of the perturbation in pixel units
    linf: torch.Tensor        # (N,) largest absolute pixel change (pixel units)
    confidence: torch.Tensor  # (T + 1, N) target probability before each step and at the end (T = max steps);
    #                           an image's column stays constant once it is fooled

    @property
    def perturbation(self) -> torch.Tensor:
        """``(N, 3, H, W)`` adversarial minus original in pixel units (magnify it to display it)."""
        return denormalize(self.image) - denormalize(self.original)


def _pixels(image: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Normalized image -> pixels in [0, 1]; a ValueError when the image is not a valid picture."""
    u = denormalize(as_batch(image, model).detach())
    if u.shape[1] != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got shape {tuple(u.shape)}")
    low, high = float(u.min()), float(u.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(f"the image has pixels in [{low:.3g}, {high:.3g}] after denormalize, outside [0, 1]: "
                         "pass a normalized photo (helpers.load_image) or clamp it into helpers.valid_range")
    return u.clamp(0.0, 1.0)


class PixelStep(torch.optim.Optimizer):
    """:func:`fooling_image`'s update as an optimizer of normalized images: a step of L2 length ``lr`` in pixel
    units (one norm per image) along the score's gradient with respect to the pixels.

    ``p.grad`` is the gradient of the loss (minus the score) with respect to the normalized image ``x = (u -
    mean) / std``, so the score's gradient in pixels is ``g = -p.grad / std`` and the pixel step ``lr * g /
    ||g||_2`` moves ``x`` by that step divided by ``std``.
    """

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, {"lr": lr})

    def step(self, closure=None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                std = torch.tensor(IMAGENET_STD, dtype=p.dtype, device=p.device).view(3, 1, 1)
                g = -p.grad / std
                norm = g.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
                with torch.no_grad():
                    p.add_(group["lr"] * g / norm / std)


def _predicts(t: torch.Tensor) -> Objective:
    """1.0 for each image whose top class (argmax of the logits) is its target ``t[i]``, else 0.0; a step
    function, never maximized: :func:`fooling_image` tracks it to freeze the fooled images."""
    return Objective(lambda acts: (acts[LOGITS].argmax(1) == t.to(acts[LOGITS].device)).float(), {LOGITS: None},
                     "predicts_target")


def _freeze_fooled(max_steps: int) -> Callable[[torch.Tensor, Step], torch.Tensor]:
    """The ``after`` operation of :func:`fooling_image`: an image the model already classified as its target
    before this step keeps its pixels (the step is undone for it); once every image is fooled, or after
    ``max_steps`` steps, the run stops before another update."""

    def freeze(img: torch.Tensor, step: Step) -> torch.Tensor:
        fooled = step.tracked[FOOLED] > 0.5
        if step.index == max_steps or bool(fooled.all()):
            raise StopRender
        return torch.where(fooled.view(-1, 1, 1, 1), step.before, img)

    return freeze


FOOLED, PROBABILITY = "fooled", "probability"  # what fooling_image tracks through render
TOO_SMALL_FIX = "pass an image of at least {n}x{n} px"


def fooling_image(model: nn.Module, image: torch.Tensor, target: Target, *, lr: float = 0.01,
                  max_steps: int = 100, amp: bool = False, channels_last: bool | None = None,
                  show_progress: bool | None = None) -> FoolingResult:
    """Gradient ascent on the target class score until the model predicts the target class.

    Each step adds ``lr * g / ||g||_2`` to the pixels, ``g`` the gradient of the target's unnormalized score
    (:func:`helpers.objectives.class_logit`; one L2 norm per image), then clips to [0, 1]. An image stops changing
    once the target wins, so each image gets the smallest number of steps that fools the model. Run by
    :func:`helpers.render` (the optimizer :class:`PixelStep`, an ``after`` operation freezing the fooled images
    and stopping when all are), in eval mode with frozen weights; the model's flags, weights, ``.grad`` and hooks
    are left as found, also on errors. Ctrl-C returns the steps made so far with ``interrupted=True``.
    Paper: https://arxiv.org/abs/1312.6199

    Args:
        model: classifier mapping normalized ``(N, 3, H, W)`` to logits ``(N, classes)``.
        image: ``(N, 3, H, W)`` or ``(3, H, W)``, normalized, pixels in [0, 1] after denormalizing (e.g. from
            :func:`helpers.load_image`), ideally correctly classified; left unchanged.
        target: the class to reach, one for all images or one per image (an int or ``objectives.class_logit(c)``).
        lr: L2 length of one step in pixel units (for the whole image).
        max_steps: give up after this many steps (``fooled`` then says which images made it).
        amp: run the network in bfloat16 autocast (the image stays float32).
        channels_last: channels-last convolutions (:mod:`helpers.speed`); None: on the CPU yes, on a GPU no.
        show_progress: progress bar over the steps; None follows ``helpers.config.progress_enabled()``.

    Returns:
        :class:`FoolingResult` with the images (of the input's shape, ``(3, H, W)`` for one ``(3, H, W)`` image,
        on its device), steps, L2/Linf norms and the confidence trajectory (``(T + 1, N)`` as for a batch).
        After Ctrl-C during the final scoring pass the last confidence row and ``score`` are NaN and ``fooled``
        is False.

    Raises:
        ValueError: bad image shape or range, target out of range, ``lr <= 0`` or ``max_steps < 0``.
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive (a step length in pixel units), got {lr!r}")
    positive_int(max_steps, "max_steps", minimum=0)
    original = as_batch(image, model).detach().clone()
    n = original.shape[0]
    t = target_indices(target, n, None, original.device)  # the class range: checked by class_logit on the logits
    start = normalize(_pixels(original, model))
    res = render(model, class_logit(t.tolist()), start=start, steps=max(max_steps, 1), lr=lr,
                 optimizer=lambda params: PixelStep(params, lr), after=[_freeze_fooled(max_steps)],
                 track={PROBABILITY: class_probability(t.tolist()), FOOLED: _predicts(t)}, amp=amp,
                 channels_last=channels_last, show_progress=show_progress, desc="fooling", too_small_fix=TOO_SMALL_FIX)
    device = original.device
    steps = (1 - res.tracked[FOOLED]).sum(0).long().to(device)
    untouched = (steps == 0).view(-1, 1, 1, 1)  # returned bit for bit, without a normalize round trip
    adversarial = torch.where(untouched, original, res.image)
    delta = (denormalize(adversarial) - denormalize(original)).flatten(1)
    confidence = torch.cat([res.tracked[PROBABILITY], res.tracked_score[PROBABILITY][None]]).to(device)
    single = image.dim() == 3
    return FoolingResult(image=adversarial[0] if single else adversarial, history=res.history, score=res.score,
                         tracked={TOTAL: res.history, **res.tracked},
                         tracked_score={TOTAL: res.score, **res.tracked_score}, interrupted=res.interrupted,
                         original=original[0] if single else original, target=t,
                         fooled=res.tracked_score[FOOLED].to(device) > 0.5, steps=steps, l2=delta.norm(dim=1),
                         linf=delta.abs().amax(dim=1), confidence=confidence)


def _logits(model: nn.Module, u: torch.Tensor) -> torch.Tensor:
    try:
        out = model(normalize(u))
    except RuntimeError as error:
        explain_small_image(model, None, u, error)  # an image too small: the smallest size that works
        raise
    return check_logits(out, u.shape[0])


def fgsm(model: nn.Module, image: torch.Tensor, target: Target, *, epsilon: float = 2 / 255,
         targeted: bool = False) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015, https://arxiv.org/abs/1412.6572).

    One step of size ``epsilon`` per pixel along the sign of the cross-entropy's gradient: up the loss of the
    true class ``target`` (untargeted), or down the loss of ``target`` as the class to reach (``targeted=True``);
    then clipped to [0, 1]. Computed in eval mode with frozen weights; the model is left as found.

    Args:
        model: classifier mapping normalized ``(N, 3, H, W)`` to logits ``(N, classes)``.
        image: ``(N, 3, H, W)`` or ``(3, H, W)``, normalized, pixels in [0, 1] after denormalizing.
        target: the true class (untargeted) or the class to reach (targeted); one or one per image, an int or
            ``objectives.class_logit(c)``.
        epsilon: the per-pixel change in pixel units (``2/255`` = two grey levels); the L-inf norm of the
            perturbation is at most ``epsilon``.
        targeted: move towards ``target`` instead of away from it.

    Returns:
        The adversarial image, normalized, of the image's shape, on its device.

    Raises:
        ValueError: bad image shape or range, target out of range, negative ``epsilon``.
    """
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0 (pixel units, e.g. 2/255), got {epsilon!r}")
    u = _pixels(image, model)
    with frozen_eval(model), torch.enable_grad():
        u.requires_grad_(True)
        scores = _logits(model, u)
        t = target_indices(target, u.shape[0], scores.shape[1], scores.device)
        # sum, not mean: each image's step must not depend on the batch size (only the sign is used anyway)
        (g,) = torch.autograd.grad(F.cross_entropy(scores, t, reduction="sum"), u)
    direction = -g.sign() if targeted else g.sign()
    return normalize((u.detach() + epsilon * direction).clamp(0.0, 1.0)).reshape(image.shape)
