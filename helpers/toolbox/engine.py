"""One gradient-ascent engine for every optimization technique: :func:`render`.

``render(model, objective, start=..., steps=..., transforms=[...])`` optimizes the pixels of a batch of images to
maximize an :class:`helpers.objectives.Objective`. Each step, as in lucent's ``render_vis``:

1. the image goes through the ``transforms`` (e.g. :func:`jitter`, a random roll) and the model runs only up to
   the deepest layer the objective reads (:class:`helpers.hooks.TruncatedForward`);
2. the loss ``-objective.sum()`` is backpropagated to the pixels (the weights are frozen: no weight gradients);
3. one optimizer step for the whole run, then the ``after`` operations (e.g. L2++'s blur), the clamp to the
   displayable range, and a NaN/inf check every ``CHECK_EVERY`` steps.

The whole run is inside :func:`helpers.hooks.frozen_eval` and the lean loop of :mod:`helpers.speed`, so the
model is left exactly as found; Ctrl-C returns the images made so far. The techniques (``visualize_filter``,
``visualize_class``, ``deep_dream``, ...) are short wrappers: an objective, a start image and transforms.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn

from .._checks import (
    as_batch,
    check_optimizer,
    finite_number,
    image_values,
    is_integer,
    positive_int,
    rgb_fix,
)
from ..config import progress
from ..hooks import capture, frozen_eval, model_device
from ..images import normalize, valid_range
from ..objectives import Objective
from ..speed import lean_loop

OptimizerSpec = str | Callable[[list[torch.Tensor]], torch.optim.Optimizer]  # a name, or a factory params -> Optimizer
Start = torch.Tensor | int | tuple[int, int]
Fill = float | tuple[float, float]
Transform = Callable[[torch.Tensor], torch.Tensor]

CHECK_EVERY = 16  # steps between finiteness checks (each one is a host sync)
NOISE = (0.4, 0.6)  # default pixel range of the start noise: mid-gray with a little texture
START_FIX = "pass start={n} or a start image of at least {n}x{n} px"  # render's remedy for a too-small image


# ---------------------------------------------------------------- the pieces of one step

def check_finite(img: torch.Tensor, step: int, lr: float, clamp: bool = True) -> None:
    """Stop with a clear error when the optimized image holds NaN or inf (one host sync). The start, ``lr`` and
    the prior weights were checked to be finite before the first step, so this is a diverging ascent."""
    if not bool(torch.isfinite(img).all()):
        fix = "lower lr" if clamp else "lower lr or pass clamp=True"
        raise FloatingPointError(f"the image became NaN/inf by step {step} (lr={lr:g}): the ascent diverged; {fix}")


def image_step(opt: torch.optim.Optimizer, loss: torch.Tensor, img: torch.Tensor, step: int, lr: float,
               bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
               after: Callable[[torch.Tensor], None] | None = None) -> None:
    """One update of an optimized image: backward of ``loss``, optimizer step, then (without autograd) the
    image operation ``after(img)`` if given, clamping to ``bounds = (low, high)`` if given, and a NaN/inf check
    every ``CHECK_EVERY`` steps (the only host sync)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        if after is not None:
            after(img)
        if bounds is not None:
            img.clamp_(*bounds)
    if (step + 1) % CHECK_EVERY == 0:
        check_finite(img, step + 1, lr, bounds is not None)


def jitter_shifts(steps: int, jitter: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """``steps`` random ``(dy, dx)`` rolls in ``[-jitter, jitter]``, drawn on the CPU (no device sync): the
    shifts :class:`jitter` draws one step at a time from the same generator."""
    return [jitter_shift(jitter, generator) for _ in range(steps)]


def jitter_shift(jitter: int, generator: torch.Generator) -> tuple[int, int]:
    """One random ``(dy, dx)`` roll in ``[-jitter, jitter]`` from ``generator`` (CPU, no device sync);
    ``(0, 0)`` without drawing for ``jitter <= 0``."""
    if jitter <= 0:
        return (0, 0)
    dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
    return dy, dx


def make_optimizer(optimizer: OptimizerSpec, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """``"adam"`` or ``"sgd"`` with learning rate ``lr``, or ``optimizer(params)`` for a factory
    ``params -> Optimizer``, which sets its own learning rate (``lr`` is then unused). An optimizer class is refused:
    called with the parameters only it would run at its own default learning rate, not ``lr``."""
    if isinstance(optimizer, type):
        raise TypeError(f"optimizer={optimizer.__name__} is a class; pass a factory params -> Optimizer with its "
                        f"learning rate, e.g. optimizer=lambda p: torch.optim.{optimizer.__name__}(p, lr={lr:g}), "
                        "or 'adam' / 'sgd' to use lr=")
    if callable(optimizer):
        return optimizer(params)
    name = str(optimizer).lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or a factory params -> Optimizer")


def start_images(start: Start, n: int, generator: torch.Generator, device: torch.device | str, *,
                 fill: Fill = NOISE, shared: bool = True) -> torch.Tensor:
    """The ``(n, 3, H, W)`` start images in normalized space, float32, on ``device`` (a fresh tensor).

    ``start`` is a normalized image ``(3, H, W)``, ``(1, 3, H, W)`` or ``(n, 3, H, W)`` (copied, never modified),
    or a size ``S`` / ``(H, W)``: then ``fill`` gives the pixel values before normalization, a number ``v`` for a
    constant image (``128 / 255`` for "filled with 128") or ``(low, high)`` for uniform noise drawn from
    ``generator``, one noise image repeated ``n`` times (``shared=True``) or ``n`` independent ones.
    """
    if isinstance(start, torch.Tensor):
        image_values(start, "start")  # floating point, finite, with data
        x = start.unsqueeze(0) if start.dim() == 3 else start
        if x.dim() == 4 and x.shape[1] != 3:
            raise ValueError(f"a start image must be RGB, got {x.shape[1]} channels ({tuple(start.shape)}); "
                             + rgb_fix(x.shape[1]))
        if x.dim() != 4 or x.shape[0] not in (1, n):
            raise ValueError(f"a start image must be (1, 3, H, W) or ({n}, 3, H, W) in normalized space "
                             f"(e.g. helpers.load_image), got {tuple(start.shape)}")
        return x.detach().to(device=device, dtype=torch.float32).expand(n, -1, -1, -1).clone()
    if not (is_integer(start) or isinstance(start, tuple | list)):
        raise ValueError(f"start must be a normalized image tensor or an integer size S or (H, W), got "
                         f"{type(start).__name__} {start!r} (a pixel value or a (low, high) noise range is fill=, "
                         "e.g. fill=128/255)")
    h, w = (start, start) if is_integer(start) else tuple(start)
    if not (is_integer(h) and is_integer(w) and h > 0 and w > 0):
        raise ValueError(f"a start size must be positive integers S or (H, W), got {start!r} (a pixel value or a "
                         "(low, high) noise range is fill=, e.g. fill=(0.0, 1.0))")
    h, w = int(h), int(w)
    if isinstance(fill, int | float) and not isinstance(fill, bool):
        if not 0.0 <= fill <= 1.0:  # also refuses NaN
            raise ValueError(f"fill={fill!r} is outside [0, 1]: the fill of a start made from a size is a pixel value "
                             "in [0, 1] (128/255 for 'filled with 128') or a (low, high) noise range")
        pixels = torch.full((1, 3, h, w), float(fill))
    else:
        low, high = fill
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"fill=(low, high) is start noise and needs 0 <= low <= high <= 1 (pixel values), "
                             f"got {fill}")
        pixels = low + (high - low) * torch.rand(1 if shared else n, 3, h, w, generator=generator)
    return normalize(pixels).expand(n, -1, -1, -1).to(device).clone()


class jitter:  # noqa: N801 - used like a function: transforms=[jitter(8)]
    """A transform: roll the images by a random ``(dy, dx)`` in ``[-pixels, pixels]``, new each step.

    The shifts come from :func:`render`'s seeded generator (drawn once per run on the CPU, no device sync);
    ``unrolled_first=True`` leaves the first step unrolled (DeepDream's octaves start from the image as it is).
    """

    def __init__(self, pixels: int, *, unrolled_first: bool = False) -> None:
        if not is_integer(pixels) or pixels < 0:
            raise ValueError(f"jitter is a shift in pixels, an integer >= 0 (0 = off), got {pixels!r}")
        self.pixels = int(pixels)
        self.unrolled_first = unrolled_first
        self._generator = torch.Generator().manual_seed(0)
        self._calls = 0

    def bind(self, generator: torch.Generator, steps: int) -> None:
        """Draw this run's shifts from ``generator``, one per step as the run goes (called by :func:`render`
        before the first step; ``steps`` is unused: nothing is precomputed)."""
        self._generator, self._calls = generator, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shift = jitter_shift(self.pixels, self._generator)
        if self.unrolled_first and self._calls == 0:
            shift = (0, 0)  # drawn all the same, so the later shifts do not depend on unrolled_first
        self._calls += 1
        return torch.roll(x, shifts=shift, dims=(-2, -1))

    def __repr__(self) -> str:
        return f"jitter({self.pixels})"


def jittered(pixels: int) -> list[Transform]:
    """``[jitter(pixels)]``, or ``[]`` for 0: the transform list of a technique's ``jitter=`` option."""
    return [jitter(pixels)] if jitter(pixels).pixels else []


@dataclass
class Step:
    """What an ``after`` operation of :func:`render` sees besides the image: the step just taken (0-based),
    the image before it, the gradient of the loss ``-objective.sum()`` at that image, and (detached, ``(N,)``)
    the objective and each ``track`` objective of that image's forward pass (after the transforms)."""

    index: int
    before: torch.Tensor
    grad: torch.Tensor
    score: torch.Tensor | None = None
    tracked: dict[str, torch.Tensor] = field(default_factory=dict)


class StopRender(Exception):  # noqa: N818 - a signal like StopIteration, not an error
    """Raised by an ``after`` operation of :func:`render` to end the run early, e.g. once every image has reached
    its goal. The step during which it is raised is undone (the image goes back to ``Step.before``) and not
    counted: the result holds the images after ``Step.index`` steps, ``Step.index`` history rows, and is not
    ``interrupted``."""


def objective_score(model: nn.Module, image: torch.Tensor, objective: Objective) -> torch.Tensor:
    """``objective`` of normalized images ``(N, 3, H, W)`` (or ``(3, H, W)``), without gradients, in eval mode;
    the model is left as found. Returns ``(N,)`` float32 on the model's device. The argument order is the
    package's ``(model, image, target)``."""
    if isinstance(image, Objective) and isinstance(objective, torch.Tensor):
        raise TypeError("objective_score(model, image, objective): the image comes before the objective")
    x = as_batch(image, model)
    with torch.no_grad(), frozen_eval(model), capture(model, objective) as forward:
        return objective(forward(x.to(model_device(model), torch.float32))).float()


# ---------------------------------------------------------------- the engine

@dataclass
class RenderResult:
    """What :func:`render` returns (tensors detached), and the base of every ascent's result: the wrappers'
    results (:class:`helpers.AscentResult`, :class:`helpers.ClassResult`, :class:`helpers.DiversityResult`,
    :class:`helpers.InversionResult`, :class:`helpers.TextureResult`, :class:`helpers.DreamResult`) are
    subclasses with the same fields, ``history``/``score`` the technique's objective without its priors
    (``tracked["total"]`` the whole objective), plus the technique's own fields."""

    image: torch.Tensor  # (N, 3, H, W) optimized images, ImageNet-normalized (like load_image), on the start
    #                      tensor's device (the model's for a start made from a size)
    history: torch.Tensor  # (steps, N) objective of the transformed image before each update, CPU
    score: torch.Tensor  # (N,) objective of the returned images (no transforms), CPU
    tracked: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (steps, N) history of each `track`
    tracked_score: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (N,) of the returned images
    interrupted: bool = False  # True when Ctrl-C ended the run early (history then has fewer rows; score NaN
    #                            when it came during the final scoring pass)


@dataclass(kw_only=True)
class LossResult(RenderResult):
    """A :class:`RenderResult` of a technique whose natural number is a loss (feature inversion, texture
    synthesis): ``history`` and ``score`` are what the engine maximized, minus the loss, and :attr:`loss` /
    :attr:`loss_history` give the loss itself."""

    @property
    def loss(self) -> torch.Tensor:
        """``(N,)`` the loss of the returned images, ``-score``."""
        return -self.score

    @property
    def loss_history(self) -> torch.Tensor:
        """``(steps, N)`` the loss before each update, ``-history``."""
        return -self.history


Result = TypeVar("Result", bound=RenderResult)
TOTAL = "total"  # the key of a wrapper result's `tracked`: the whole objective the engine maximized, priors included


def technique_result(kind: type[Result], res: RenderResult, *, image: torch.Tensor | None = None,
                     **fields: object) -> Result:
    """A wrapper's result of kind ``kind`` from the :class:`RenderResult` ``res`` of its :func:`render`:
    ``history``/``score`` the objective ``render`` tracked under ``"score"`` (the technique's objective without
    its priors) or, when nothing was tracked, ``render``'s own; ``tracked``/``tracked_score`` hold under
    :data:`TOTAL` what the engine maximized, priors included; ``interrupted`` passed through; ``image``
    (default ``res.image``) and the technique's own ``fields``."""
    return kind(image=res.image if image is None else image, history=res.tracked.get("score", res.history),
                score=res.tracked_score.get("score", res.score), tracked={TOTAL: res.history},
                tracked_score={TOTAL: res.score}, interrupted=res.interrupted, **fields)


def render(model: nn.Module, objective: Objective, *, start: Start = 128, fill: Fill = NOISE, n: int | None = None,
           shared_noise: bool = True, steps: int = 100, lr: float = 0.05, optimizer: OptimizerSpec = "adam",
           transforms: Sequence[Transform] = (), after: Sequence[Callable[[torch.Tensor, Step], torch.Tensor]] = (),
           clamp: bool = True, seed: int | torch.Generator = 0, amp: bool = False, channels_last: bool | None = None,
           track: Mapping[str, Objective] | None = None, show_progress: bool | None = None,
           desc: str | None = None, too_small_fix: str = START_FIX) -> RenderResult:
    """Optimize the pixels of a batch of images to maximize ``objective`` (activation maximization).

    The loss minimized each step is ``-objective(acts).sum()`` over the batch, with ``acts`` captured from the
    transformed image (priors such as :func:`helpers.objectives.l2` read the untransformed image). One optimizer
    for the whole run; the weights are frozen and get no gradients; only the layers up to the deepest one read
    run; the model's flags, weights, ``.grad`` and hooks are left exactly as found, also on an error.

    Args:
        model: a CNN taking ImageNet-normalized ``(N, 3, H, W)`` images.
        objective: what to maximize, e.g. ``channel_mean("features.28", 5) - l2(1.0)``
            (:mod:`helpers.objectives`).
        start: a normalized start image ``(3, H, W)``, ``(1, 3, H, W)`` or ``(N, 3, H, W)`` (copied), or a size
            ``S`` / ``(H, W)`` for a start image made of ``fill``.
        fill: for a size ``start``: a pixel value in ``[0, 1]`` (constant image) or ``(low, high)`` uniform noise.
        n: batch size; None: the start tensor's batch, else the number of per-image targets of the objective,
            else 1.
        shared_noise: one noise image for the whole batch (True) or independent ones.
        steps: optimizer steps.
        lr: learning rate of a named optimizer, in normalized units (a pixel step of 1.0 is about 4.4 units).
        optimizer: ``"adam"``, ``"sgd"``, or a factory ``params -> Optimizer`` that sets its own learning rate
            (e.g. ``lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9)``; ``lr`` is then unused).
        transforms: tensor -> tensor functions applied in order to the image before each forward pass
            (e.g. ``[jitter(8)]``); a transform with a ``bind(generator, steps)`` method draws its randomness
            from the run's generator.
        after: ``(image, Step) -> image`` operations applied in order after each optimizer step, before the
            clamp (e.g. ``L2PlusPlus(l2_weight=w)``, L2++'s blur and clips, for an objective with the prior
            ``l2(w)``: :class:`helpers.L2PlusPlus`); one may raise :class:`StopRender` to end the run
            there (that step undone), e.g. once every image has reached its goal.
        clamp: clamp the pixels to the displayable range (:func:`helpers.valid_range`) after each step.
        seed: seeds the start noise and the transforms' randomness (a local generator, or a generator to
            continue; the global RNG is untouched).
        amp: run the network in bfloat16 autocast (the image stays float32).
        channels_last: channels-last convolutions (:mod:`helpers.speed`); None: on the CPU yes, on a GPU no.
        track: more objectives ``{name: Objective}`` whose values are recorded every step from the same forward
            pass (``RenderResult.tracked``), e.g. the score without its priors.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.
        desc: label of the progress bar (default: the objective's repr).
        too_small_fix: the remedy the error for an image too small for the layers names, with ``{n}`` for the
            smallest side that works; a wrapper without ``start=`` names its own remedy (``deep_dream``: its octaves).

    Returns:
        :class:`RenderResult`: ``image`` ``(N, 3, H, W)`` normalized, on the start tensor's device (the model's
        for a size); ``history``
        ``(steps, N)`` and ``score`` ``(N,)`` on the CPU (fewer history rows when an ``after`` operation stopped
        the run). After Ctrl-C (KeyboardInterrupt) during step ``k`` the result holds the image after ``k`` steps
        and ``k`` history rows, ``interrupted=True``, with a warning; an interrupt during the final scoring pass
        returns all steps with ``score`` (and ``tracked_score``) NaN, ``interrupted=True``; an interrupt before
        the first step has finished is raised as usual.

    Raises:
        ValueError: unknown layer (with close names), channel out of range, bad start, mismatched batch.
        FloatingPointError: the image became NaN/inf (learning rate too high).
    """
    if not isinstance(objective, Objective):
        raise ValueError(f"objective must be a helpers.objectives.Objective (e.g. channel_mean('features.28', 5)), "
                         f"got {type(objective).__name__}")
    steps = positive_int(steps, "steps")
    lr = finite_number(lr, "lr", minimum=0)
    if n is not None:
        n = positive_int(n, "n")
    track = dict(track or {})
    device = model_device(model)
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    if n is None:
        batch = start.shape[0] if isinstance(start, torch.Tensor) and start.dim() == 4 else 1
        n = batch if batch > 1 else objective.batch or 1
    if objective.batch is not None and objective.batch != n:
        raise ValueError(f"{objective!r} scores {objective.batch} images (one target each) but the batch has {n}")
    everything = sum(track.values(), objective)  # what the forward pass must capture
    # validate the layers (and channels) before drawing anything
    with frozen_eval(model), capture(model, everything, fix=too_small_fix):
        pass
    img = start_images(start, n, generator, device, fill=fill, shared=shared_noise).requires_grad_(True)
    for t in transforms:
        if hasattr(t, "bind"):
            t.bind(generator, steps)
    low, high = valid_range(img)
    history = torch.empty(steps, n, device=device)
    tracked = {name: torch.empty(steps, n, device=device) for name in track}
    opt = check_optimizer(make_optimizer(optimizer, [img], lr), "render")
    done, interrupted = 0, False

    def step_after(step: int, before: torch.Tensor | None, score: torch.Tensor,
                   extra: dict[str, torch.Tensor]) -> Callable[[torch.Tensor], None] | None:
        if not after:
            return None

        def apply(x: torch.Tensor) -> None:
            info = Step(step, before, x.grad, score.detach(), {name: value.detach() for name, value in extra.items()})
            y = x
            for op in after:
                y = op(y, info)
            x.copy_(y)
        return apply

    with (torch.enable_grad(), frozen_eval(model), lean_loop(model, channels_last, device, everything.layers),
          capture(model, everything, fix=too_small_fix) as forward):
        bar = progress(range(steps), desc=desc or repr(objective)[:60], enabled=show_progress)
        try:
            for step in bar:
                # 1. the transformed image through the truncated network; the objective of each image
                x = img
                for t in transforms:
                    x = t(x)
                    if not isinstance(x, torch.Tensor):
                        raise TypeError(f"the transform {t!r} returned {type(x).__name__}, not a tensor: a transform "
                                        "is a function tensor -> tensor (return the new image)")
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    acts = forward(x, img)
                    score = objective(acts)
                    extra = {name: o(acts) for name, o in track.items()}
                # 2. one optimizer step on -objective, the `after` operations, the clamp
                before = img.detach().clone() if after else None
                try:
                    image_step(opt, -score.sum(), img, step, lr, (low, high) if clamp else None,
                               after=step_after(step, before, score, extra))
                except StopRender:  # an `after` operation ended the run: this step is undone, not counted
                    with torch.no_grad():
                        img.copy_(before)
                    break
                history[step] = score.detach()
                for name, value in extra.items():
                    tracked[name][step] = value.detach()
                done = step + 1
        except KeyboardInterrupt:
            if done == 0:
                raise
            interrupted = True
            if clamp:  # the interrupt may have come between the optimizer step and the clamp
                with torch.no_grad():
                    img.clamp_(low, high)
            warnings.warn(f"interrupted (Ctrl-C) after {done} of {steps} steps: returning the partial result",
                          stacklevel=2)
        finally:
            if hasattr(bar, "close"):
                bar.close()
        check_finite(img, done, lr, clamp)
        try:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                acts = forward(img, img)
                final = objective(acts).float().cpu()
                final_tracked = {name: o(acts).float().cpu() for name, o in track.items()}
        except KeyboardInterrupt:  # during the final scoring pass: the images are made, their scores unknown
            interrupted = True
            final = torch.full((n,), float("nan"))
            final_tracked = {name: final.clone() for name in track}
            warnings.warn(f"interrupted (Ctrl-C) while scoring the result after {done} of {steps} steps: returning "
                          "the images with score NaN", stacklevel=2)
    image = img.detach().to(start.device) if isinstance(start, torch.Tensor) else img.detach()
    return RenderResult(image=image, history=history[:done].cpu(), score=final,
                        tracked={name: h[:done].cpu() for name, h in tracked.items()},
                        tracked_score=final_tracked, interrupted=interrupted)
