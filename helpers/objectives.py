"""Objectives: what a gradient-ascent run maximizes, as small composable callables.

An :class:`Objective` maps the activations captured in one forward pass to one score per image, ``(N,)``, and
declares what it reads (``objective.layers``): dotted layer names, :data:`LOGITS` (``""``, the model's output)
and :data:`IMAGE` (the optimized image itself, for priors). Objectives add, subtract, negate and scale by a
number; a sum reads the union of its terms' layers and has a readable ``repr``:

>>> class_logit(243) - 1e-4 * l2()
class_logit(243) - 1e-4 * l2

:func:`helpers.render` runs any objective; the techniques (``visualize_filter``, ``visualize_class``, ...) are
objectives plus a start image and transforms. Like pytorch-grad-cam's ``ClassifierOutputTarget`` and lucent's
``objectives``. The Gram matrix (Gatys et al. 2015) and the relative feature distance (Mahendran & Vedaldi 2015)
live here too, shared by texture synthesis, diversity and inversion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from ._checks import Indices, check_logits, indices
from .regularizers import l2 as l2_norm
from .regularizers import total_variation as tv_norm

LOGITS = ""
"""The key of the model's output (the logits) in the captured activations."""
IMAGE = "<image>"
"""The key of the optimized image itself (before the transforms) in the captured activations."""

Reads = dict[str, frozenset[int] | None]  # key -> the channels read (None: the whole tensor)
Channels = Indices  # one index for all images, or one per image


class Activations(dict):
    """``{key: tensor}`` of one forward pass. ``computed[layer]`` lists the channels held when the engine
    computed only a few channels of a convolution (``acts[layer][:, j]`` is channel ``computed[layer][j]``)."""

    def __init__(self, *args, computed: Mapping[str, tuple[int, ...]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.computed = dict(computed or {})


def _number(w: float) -> str:
    """A weight as a person writes it: 2, 0.5, 1e-4."""
    if w != 0 and (abs(w) < 1e-3 or abs(w) >= 1e5):
        mantissa, exponent = f"{w:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{w:g}"


def _merge(a: Reads, b: Reads) -> Reads:
    out = dict(a)
    for key, channels in b.items():
        if key not in out:
            out[key] = channels
        else:
            out[key] = None if out[key] is None or channels is None else out[key] | channels
    return out


class Objective:
    """A score to maximize: ``objective(acts) -> (N,)`` from the captured activations.

    Build them with the functions of this module and combine with ``+``, ``-``, unary ``-`` and ``*`` by a
    number. ``layers`` is the tuple of keys read (dotted layer names, :data:`LOGITS`, :data:`IMAGE`);
    ``batch`` the number of images a per-image channel/class list fixes (None when any batch works);
    ``channels`` the channel indices named per layer; ``classes`` the class index (or one per image) of a
    :func:`class_logit`, None for every other objective (a sum or multiple of one included).
    """

    def __init__(self, fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor], reads: Reads, name: str, *,
                 batch: int | None = None, compound: bool = False,
                 channels: Mapping[str, frozenset[int]] | None = None,
                 classes: tuple[int, ...] | None = None) -> None:
        self.fn = fn
        self.reads = dict(reads)
        # every channel index named by a term, per layer (checked against the model even when a term reads all)
        self.channels = {k: v for k, v in reads.items() if v is not None} if channels is None else dict(channels)
        self.name = name
        self.batch = batch
        self.compound = compound  # a sum: parenthesized inside a product or after a minus
        self.classes = classes

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.reads)

    def __call__(self, acts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return self.name

    def _inner(self) -> str:
        return f"({self.name})" if self.compound else self.name

    def _batch_with(self, other: Objective) -> int | None:
        if self.batch is not None and other.batch is not None and self.batch != other.batch:
            raise ValueError(f"{self!r} scores {self.batch} images but {other!r} scores {other.batch}")
        return self.batch if self.batch is not None else other.batch

    def __add__(self, other: object) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(lambda acts: self(acts) + other(acts), _merge(self.reads, other.reads),
                         f"{self.name} + {other.name}", batch=self._batch_with(other), compound=True,
                         channels=_merge(self.channels, other.channels))

    def __radd__(self, other: object) -> Objective:
        if isinstance(other, int) and other == 0:  # sum([...]) starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: object) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(lambda acts: self(acts) - other(acts), _merge(self.reads, other.reads),
                         f"{self.name} - {other._inner()}", batch=self._batch_with(other), compound=True,
                         channels=_merge(self.channels, other.channels))

    def __neg__(self) -> Objective:
        return Objective(lambda acts: -self(acts), self.reads, f"-{self._inner()}", batch=self.batch,
                         channels=self.channels)

    def __mul__(self, weight: object) -> Objective:
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            return NotImplemented
        w = float(weight)
        return Objective(lambda acts: w * self(acts), self.reads, f"{_number(w)} * {self._inner()}",
                         batch=self.batch, channels=self.channels)

    __rmul__ = __mul__


# ---------------------------------------------------------------- reading activations

def _label(items: tuple[int, ...]) -> str:
    return str(items[0]) if len(items) == 1 else str(list(items))


def _rows_and_columns(items: tuple[int, ...], n: int, positions: Mapping[int, int] | None,
                      device: torch.device, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if len(items) not in (1, n):
        raise ValueError(f"{len(items)} {what}s given for a batch of {n} images: give one, or one per image")
    per_image = items * n if len(items) == 1 else items
    if positions is not None:
        per_image = tuple(positions[c] for c in per_image)
    return torch.arange(n, device=device), torch.tensor(per_image, device=device)


def _channel_maps(acts: Mapping[str, torch.Tensor], layer: str, items: tuple[int, ...]) -> torch.Tensor:
    """``(N, H, W)`` float: image ``i``'s map of its own channel (``items[i]``, or ``items[0]`` for all)."""
    a = acts[layer]
    if a.dim() != 4:
        raise ValueError(f"layer {layer!r} gives shape {tuple(a.shape)}, not channel maps (N, C, h, w); pick a "
                         "convolutional layer (helpers.layer_names(model))")
    computed = getattr(acts, "computed", {}).get(layer)
    positions = None if computed is None else {c: j for j, c in enumerate(computed)}
    rows, columns = _rows_and_columns(items, a.shape[0], positions, a.device, "channel")
    return a[rows, columns].float()


def class_logit(target: Channels) -> Objective:
    """The logit (unnormalized class score) ``S_c``: one class ``c`` for every image, or one per image."""
    items = indices(target, "a class")

    def score(acts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits = acts[LOGITS]
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            raise TypeError("the model must return (N, classes) logits for a class objective; for another "
                            "output use a layer objective such as channel_mean")
        k = logits.shape[1]
        if not all(0 <= c < k for c in items):
            raise ValueError(f"class(es) {list(items)} out of range: the model has {k} classes, valid indices are "
                             f"0 to {k - 1}")
        rows, columns = _rows_and_columns(items, logits.shape[0], None, logits.device, "class")
        return logits[rows, columns].float()

    return Objective(score, {LOGITS: None}, f"class_logit({_label(items)})",
                     batch=len(items) if len(items) > 1 else None, classes=items)


def channel_mean(layer: str, channel: Channels) -> Objective:
    """Mean activation over space of one channel of ``layer`` (or one channel per image): Erhan et al. 2009."""
    items = indices(channel, "a channel")
    return Objective(lambda acts: _channel_maps(acts, layer, items).mean(dim=(-2, -1)),
                     {layer: frozenset(items)}, f"channel_mean({layer!r}, {_label(items)})",
                     batch=len(items) if len(items) > 1 else None)


def channel_max(layer: str, channel: Channels) -> Objective:
    """Largest activation over space of one channel of ``layer`` (or one channel per image)."""
    items = indices(channel, "a channel")
    return Objective(lambda acts: _channel_maps(acts, layer, items).amax(dim=(-2, -1)),
                     {layer: frozenset(items)}, f"channel_max({layer!r}, {_label(items)})",
                     batch=len(items) if len(items) > 1 else None)


def _names(layers: str | Sequence[str]) -> list[str]:
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not names:
        raise ValueError("give at least one layer name, e.g. 'features.28'")
    return names


def per_layer_weights(names: list[str], weights: Sequence[float] | Mapping[str, float] | None,
                      argument: str = "weights") -> list[float]:
    """The per-layer weights ``w_l`` of ``names`` as a list: all 1 for None, one per layer in order, or a mapping
    ``{layer: w_l}``; the ``ValueError`` names ``argument``, the caller's word for them (``weights=`` here,
    ``layer_weights=`` in :func:`helpers.deep_dream` and :func:`helpers.synthesize_texture`)."""
    if weights is None:
        return [1.0] * len(names)
    if isinstance(weights, Mapping):
        missing = [name for name in names if name not in weights]
        if missing:
            raise ValueError(f"{argument}= has no weight for layer(s) {missing}: give one per layer")
        return [float(weights[name]) for name in names]
    weights = list(weights)
    if len(weights) != len(names):
        raise ValueError(f"{len(names)} layers {names} but {len(weights)} weights in {argument}=: give one weight "
                         "per layer, in the same order")
    return [float(w) for w in weights]


def layer_rms(layers: str | Sequence[str], weights: Sequence[float] | None = None) -> Objective:
    """DeepDream's objective: ``sum_l w_l * ||A_l||_2 / sqrt(numel(A_l))``, each layer's root-mean-square
    activation per image, so a layer's or octave's size does not set its weight, its activation scale still does
    (Mordvintsev et al. 2015).
    ``weights``: the per-layer weights ``w_l``, one per layer (default all 1; :func:`helpers.deep_dream`'s
    ``layer_weights=``)."""
    names = _names(layers)
    ws = per_layer_weights(names, weights)

    def score(acts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for name, w in zip(names, ws, strict=True):
            a = acts[name].float().flatten(1)
            total = total + w * a.norm(dim=1) / math.sqrt(a.shape[1])
        return total

    label = names[0] if len(names) == 1 else names
    return Objective(score, dict.fromkeys(names), f"layer_rms({label!r})" if weights is None
                     else f"layer_rms({label!r}, {ws})")


def feature_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||phi - phi0||^2 / ||phi0||^2`` per image: ``(N, ...)`` and ``(N or 1, ...)`` -> ``(N,)``."""
    diff = (features.float() - target.float()).flatten(1).pow(2).sum(dim=1)
    return diff / target.float().flatten(1).pow(2).sum(dim=1)


def feature_match(layer: str, target: torch.Tensor) -> Objective:
    """Minus the relative distance :func:`feature_loss` of ``layer``'s features to ``target`` ``(N or 1, ...)``
    (feature inversion, Mahendran & Vedaldi 2015, https://arxiv.org/abs/1412.0035): 0 at a perfect match."""
    target = target.detach()
    return Objective(lambda acts: -feature_loss(acts[layer], target), {layer: None},
                     f"feature_match({layer!r})")


def gram_matrix(acts: torch.Tensor) -> torch.Tensor:
    """Gram matrix of each image's activations, averaged over positions.

    ``G[n, i, j] = sum_p F[n, i, p] * F[n, j, p] / (H * W)`` with ``F`` the activations flattened over space.

    Args:
        acts: ``(N, C, H, W)`` activations.

    Returns:
        ``(N, C, C)`` float32, symmetric.
    """
    if acts.dim() != 4:
        raise ValueError(f"gram_matrix needs (N, C, H, W) activations, got shape {tuple(acts.shape)}")
    f = acts.float().flatten(2)
    return f @ f.transpose(1, 2) / f.shape[-1]


def gram_loss(grams: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
              weights: dict[str, float] | None = None) -> torch.Tensor:
    """``sum_l w_l * ||G_l - T_l||_F^2 / ||T_l||_F^2`` per image: the relative Gram mismatch over layers.

    Args:
        grams: ``{layer: (N, C, C)}`` Gram matrices of the images.
        targets: ``{layer: (1 or N, C, C)}`` target Gram matrices, same keys.
        weights: ``{layer: w_l}`` (default all 1).

    Returns:
        ``(N,)`` losses.
    """
    total = 0.0
    for name, g in grams.items():
        t = targets[name]
        w = 1.0 if weights is None else weights[name]
        total = total + w * (g - t).pow(2).sum(dim=(1, 2)) / t.pow(2).sum(dim=(1, 2))
    return total


def gram_match(layers: str | Sequence[str], target_grams: Mapping[str, torch.Tensor],
               weights: Sequence[float] | Mapping[str, float] | None = None) -> Objective:
    """Minus :func:`gram_loss` between the Gram matrices of ``layers`` and ``target_grams`` ``{layer: (1 or N,
    C, C)}`` (texture synthesis, Gatys et al. 2015, https://arxiv.org/abs/1505.07376): 0 at a perfect match.
    ``weights``: the per-layer weights ``w_l``, one per layer or ``{layer: w_l}`` (default all 1;
    :func:`helpers.synthesize_texture`'s ``layer_weights=``)."""
    names = _names(layers)
    missing = [name for name in names if name not in target_grams]
    if missing:
        raise ValueError(f"no target Gram matrix for {missing}; compute them with gram_matrix on those layers")
    targets = {name: target_grams[name].detach() for name in names}
    layer_w = dict(zip(names, per_layer_weights(names, weights), strict=True))
    return Objective(lambda acts: -gram_loss({k: gram_matrix(acts[k]) for k in names}, targets, layer_w),
                     dict.fromkeys(names), f"gram_match({names[0] if len(names) == 1 else names!r})")


def gram_similarity(acts: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the images' flattened Gram matrices: ``(N, C, H, W)`` -> ``(N, N)``.

    The diagonal is 1 (for a non-zero Gram matrix); a batch whose images share one style has all entries near 1.
    """
    flat = gram_matrix(acts).flatten(1)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return flat @ flat.T


def diversity(layer: str, weight: float = 1.0) -> Objective:
    """Minus ``weight * sum_{j != i} cos(G_i, G_j) / N`` for image ``i``, the Gram-style similarity of each image
    to the others of the batch (Olah et al. 2017, https://distill.pub/2017/feature-visualization/#diversity).
    Summed over the batch it is minus ``weight`` times the off-diagonal sum of :func:`gram_similarity` over N."""
    w = float(weight)

    def score(acts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        sim = gram_similarity(acts[layer])
        return -w * (sim.sum(dim=1) - sim.diagonal()) / sim.shape[0]

    name = f"diversity({layer!r})" if w == 1.0 else f"diversity({layer!r}, {_number(w)})"
    return Objective(score, {layer: None}, name)



def _of_softmax(target: Channels, name: str, transform: Callable[[torch.Tensor], torch.Tensor]) -> Objective:
    """:func:`class_logit`'s selection (and checks) applied to ``transform(logits)`` computed in float32."""
    items = indices(target, "a class")
    logit = class_logit(items[0] if len(items) == 1 else list(items))

    def score(acts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits = acts[LOGITS]
        if isinstance(logits, torch.Tensor) and logits.dim() == 2:
            logits = transform(logits.float())
        return logit({LOGITS: logits})

    return Objective(score, {LOGITS: None}, f"{name}({_label(items)})", batch=logit.batch)


def class_probability(target: Channels) -> Objective:
    """The softmax probability ``p_c = exp(S_c) / sum_k exp(S_k)`` of class ``c`` over the logits: one class for
    every image, or one per image (like :func:`class_logit`). What occlusion and the deletion curves watch drop;
    unlike the logit it also rises when the other classes' scores fall."""
    return _of_softmax(target, "class_probability", lambda logits: logits.softmax(1))


def class_log_probability(target: Channels) -> Objective:
    """``log p_c = S_c - log sum_k exp(S_k)`` (``log_softmax`` of the logits): one class for every image, or one
    per image. Minus the cross-entropy loss of class ``c``, so its gradient is minus the loss gradient."""
    return _of_softmax(target, "class_log_probability", lambda logits: logits.log_softmax(1))


# ---------------------------------------------------------------- priors: objectives of the image itself

def _prior(fn: Callable[[torch.Tensor], torch.Tensor], label: str, weight: float) -> Objective:
    w = float(weight)
    name = label if w == 1.0 else f"{_number(w)} * {label}"
    return Objective(lambda acts: w * fn(acts[IMAGE]), {IMAGE: None}, name)


def total_variation(weight: float = 1.0, beta: float = 1.0) -> Objective:
    """``weight * TV^beta(I) / (H*W)`` per image, :func:`helpers.total_variation` (Eq. (1) of sheet 5 per pixel
    for ``beta=1``): a mean over pixels that does not grow with the image size, the ``tv_weight`` prior of every
    ascent. A penalty: subtract it (``channel_mean(...) - total_variation(0.1)``)."""
    label = "total_variation" if beta == 1.0 else f"total_variation(beta={beta:g})"
    return _prior(lambda img: tv_norm(img, beta), label, weight)


def l2(weight: float = 1.0) -> Objective:
    """``weight * ||I||^2 / (H*W)`` per image, :func:`helpers.l2`, in normalized space: a mean over pixels that
    does not grow with the image size, the ``l2_weight`` prior of every ascent. A penalty: subtract it."""
    return _prior(l2_norm, "l2", weight)


def alpha_norm(weight: float = 1.0, alpha: float = 6.0) -> Objective:
    """``weight * sum |I|^alpha / (H*W)`` per image (Mahendran & Vedaldi 2015's alpha-norm prior, per pixel like
    the others). A penalty."""
    return _prior(lambda img: img.abs().pow(alpha).flatten(1).sum(dim=1) / (img.shape[-2] * img.shape[-1]),
                  f"alpha_norm({alpha:g})", weight)


# ---------------------------------------------------------------- attribution targets

Target = int | Sequence[int] | torch.Tensor | Objective
"""What an attribution explains: a class index (one for all images, or one per image) or an objective."""


def target_indices(target: Target, n: int, classes: int | None,
                   device: torch.device) -> torch.Tensor:
    """``target`` (one class index for all ``n`` images, one per image, or a :func:`class_logit` objective) as a
    long tensor ``(n,)`` on ``device``; ``ValueError`` for a float/bool target, a wrong count, an index outside
    ``0 .. classes - 1`` (``classes=None``: the range is left to :func:`class_logit` on the logits), or an
    objective that is not one class score."""
    if isinstance(target, Objective):
        if getattr(target, "classes", None) is None:
            raise ValueError(f"this needs a class to score, an int or objectives.class_logit(c), not {target!r}")
        target = target.classes
    items = indices(target, "target (a class index)")
    if len(items) not in (1, n):
        raise ValueError(f"got {len(items)} targets for a batch of {n} images; pass one int or one per image")
    t = torch.tensor(items * n if len(items) == 1 else items, dtype=torch.long, device=device)
    if classes is not None and ((t < 0).any() or (t >= classes).any()):
        raise ValueError(f"target {t.tolist()} out of range: the model has {classes} classes (0..{classes - 1})")
    return t


def target_objective(target: Target, n: int) -> Objective:
    """The one resolver of attribution targets: an :class:`~helpers.objectives.Objective` is used as it is, a class
    index (one for all ``n`` images, or one per image; int, sequence or integer tensor) becomes
    :func:`~helpers.objectives.class_logit`. ``ValueError`` for a float/bool target or a wrong count."""
    if isinstance(target, Objective):
        if target.batch is not None and target.batch != n:
            raise ValueError(f"{target!r} scores {target.batch} images but the batch has {n}; give one target "
                             "for all images or one per image")
        return target
    items = indices(target, "target (a class index, one per image, or an objective from helpers.objectives)")
    if len(items) not in (1, n):
        raise ValueError(f"got {len(items)} targets for a batch of {n} images; pass one int or one per image")
    return class_logit(items[0] if len(items) == 1 else items)


def target_scores(objective: Objective, acts: Mapping[str, torch.Tensor], n: int) -> torch.Tensor:
    """``objective(acts)``, the ``(n,)`` scores to explain, after checking that the model gave logits
    ``(n, classes)`` when the objective reads them."""
    if LOGITS in objective.reads:
        check_logits(acts[LOGITS], n)
    return objective(acts)
