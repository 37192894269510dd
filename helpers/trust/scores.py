"""Can you trust the map? Attribution maps scored against ground truth, and the standard sanity checks.

Localization against a known object mask: the pointing game (Zhang et al. 2016, https://arxiv.org/abs/1608.00507)
and the share of the map's energy on the object. Faithfulness to the model: deletion and insertion curves
(Petsiuk et al. 2018, RISE, https://arxiv.org/abs/1806.07421). The model-parameter randomization test
(Adebayo et al. 2018, "Sanity Checks for Saliency Maps", https://arxiv.org/abs/1810.03292). Class
sensitivity on images with two objects of different classes. Every metric works on a batch ``(N, H, W)`` and
returns one value per image; the model runs on many perturbed copies at once.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from .._checks import as_batch
from ..gradcam import grad_cam, guided_grad_cam
from ..guided import deconvnet, guided_backprop
from ..hooks import capture, frozen_eval
from ..objectives import Target, class_probability, target_objective, target_scores
from ..saliency import saliency_map
from ..toolbox.occlusion import MEAN_COLOUR, occlusion_map

Method = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""An attribution method ``(model, images, target) -> maps``, e.g. :func:`helpers.saliency_map`."""


def _classes(target: Target, n: int) -> list[int]:
    """One class index per image; ``ValueError`` for a float target, a wrong count or a non-class objective."""
    objective = target_objective(target, n)
    if objective.classes is None:
        raise ValueError("deletion and insertion curves follow a class probability: give a class index (one, or "
                         f"one per image) or objectives.class_logit(c), not {objective!r}")
    return list(objective.classes) * n if len(objective.classes) == 1 else list(objective.classes)


def as_map(attribution: torch.Tensor) -> torch.Tensor:
    """One map per image: ``(N, 3, H, W)`` attributions (guided backprop, deconvnet, ...) become ``(N, H, W)`` by
    the largest absolute value over the colour channels (as for saliency); ``(N, H, W)`` is returned as it is."""
    if attribution.dim() == 4:
        return attribution.abs().amax(dim=1)
    if attribution.dim() != 3:
        raise ValueError(f"maps must be (N, H, W) or (N, C, H, W), got shape {tuple(attribution.shape)}")
    return attribution


def _check(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps = as_map(maps).float()
    masks = masks.to(maps.device)
    if masks.shape != maps.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} must have the same shape "
                         "(N, H, W); upsample the maps to the image size first")
    return maps, masks.bool()


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Pointing game (Zhang et al. 2016): does the map's maximum lie on the object?

    When several pixels share the maximum, the score is the share of them on the mask (the expected hit of
    picking one at random), so a uniform map scores the mask's area fraction, the chance level.

    Args:
        maps: ``(N, H, W)`` (or ``(N, C, H, W)``, see :func:`as_map`).
        masks: bool ``(N, H, W)``, True on the object.

    Returns:
        ``(N,)`` float in [0, 1]: 1.0 a hit, 0.0 a miss.
    """
    maps, masks = _check(maps, masks)
    flat = maps.flatten(1)
    top = flat == flat.amax(dim=1, keepdim=True)
    return (top & masks.flatten(1)).sum(1).float() / top.sum(1).float()


def mask_energy(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the map's positive energy that lies on the object: ``sum(relu(map) * mask) / sum(relu(map))``.

    A uniform map scores the mask's area fraction; a map that is zero off the mask scores 1. A map without
    any positive value has no energy to share: its score is NaN (average with ``torch.nanmean``).

    Args:
        maps: ``(N, H, W)`` (or ``(N, C, H, W)``, see :func:`as_map`).
        masks: bool ``(N, H, W)``.

    Returns:
        ``(N,)`` float in [0, 1] (NaN for a map without positive values).
    """
    maps, masks = _check(maps, masks)
    positive = maps.clamp(min=0).flatten(1)
    total = positive.sum(1)
    inside = (positive * masks.flatten(1)).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=torch.finfo(total.dtype).tiny), torch.nan)


@dataclass
class Curve:
    """A deletion or insertion curve (Petsiuk et al. 2018)."""

    fractions: torch.Tensor  # (steps + 1,) share of the pixels deleted (or inserted) at each point, 0 to 1
    scores: torch.Tensor  # (N, steps + 1) softmax probability of each image's target class at each point
    auc: torch.Tensor  # (N,) area under the curve (trapezoid rule over the fractions)


def _ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(N, H*W)`` rank of each pixel in the order of its map value, largest first (ties: raster order)."""
    flat = maps.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def _curve(model: nn.Module, start: torch.Tensor, end: torch.Tensor, target: Target, maps: torch.Tensor,
           steps: int, batch_size: int) -> Curve:
    """Move pixels from ``start`` to ``end`` images ``(N, C, H, W)`` in the order of ``maps``; the target
    probability per step (:func:`helpers.objectives.class_probability`, through the package's capture, which
    explains an image too small for the model)."""
    n, _, h, w = start.shape
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"maps must be a tensor (N, H, W), e.g. from helpers.saliency_map, not {type(maps).__name__}")
    maps = as_map(maps[None] if maps.dim() == 2 and n == 1 else maps)  # one (H, W) map for one image
    if maps.shape != (n, h, w):
        raise ValueError(f"maps must be ({n}, {h}, {w}) like the images, got {tuple(maps.shape)}")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    ranks = _ranks(maps.to(start.device))
    counts = torch.round(torch.linspace(0, h * w, steps + 1, device=start.device)).long()
    scores = torch.empty(n * (steps + 1), device=start.device)
    classes = _classes(target, n)
    with frozen_eval(model), torch.no_grad(), capture(model, class_probability(classes)) as forward:
        for first in range(0, n * (steps + 1), batch_size):
            j = torch.arange(first, min(first + batch_size, n * (steps + 1)), device=start.device)
            i, k = j // (steps + 1), j % (steps + 1)
            moved = (ranks[i] < counts[k, None]).view(-1, 1, h, w)  # the first counts[k] pixels of the order
            x = torch.where(moved, end[i], start[i])
            probability = class_probability([classes[m] for m in i.tolist()])  # each copy: its image's class
            scores[j] = target_scores(probability, forward(x), len(j))
    scores = scores.view(n, steps + 1)
    fractions = counts.float() / (h * w)
    return Curve(fractions.cpu(), scores.cpu(), torch.trapezoid(scores, fractions).cpu())


BLUR = "blur"  # the baseline of the insertion curve: a Gaussian blur of the image


def _baseline_like(images: torch.Tensor, baseline: float | torch.Tensor | str, sigma: float) -> torch.Tensor:
    if isinstance(baseline, str):
        if baseline != BLUR:
            raise ValueError(f"baseline must be a normalized value, a tensor like the images, or 'blur', got "
                             f"{baseline!r}")
        radius = max(1, min(int(3 * sigma), min(images.shape[-2:]) - 1))
        return TF.gaussian_blur(images, [2 * radius + 1] * 2, [sigma, sigma])
    return torch.as_tensor(baseline, dtype=images.dtype, device=images.device).expand_as(images)


def deletion_curve(model: nn.Module, images: torch.Tensor, target: Target, maps: torch.Tensor, *,
                   steps: int = 16, baseline: float | torch.Tensor | str = MEAN_COLOUR, sigma: float = 4.0,
                   batch_size: int = 256) -> Curve:
    """Deletion curve (Petsiuk et al. 2018): delete pixels, most important first, and watch the class go.

    At step ``k`` the ``k/steps`` share of the pixels with the largest map values is replaced by ``baseline``
    (captum's word for the reference input; 0 is the dataset mean in normalized space); the curve is the target's
    softmax probability. A map that points at the evidence makes the probability drop fast: a LOW area under the
    curve is good. All the perturbed copies run through the model in batches of ``batch_size``, without
    gradients, in eval mode (the model's flags are restored afterwards).

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits ``(N, classes)``.
        images: ``(N, 3, H, W)`` (or one ``(3, H, W)``, a batch of one) normalized images; left unchanged.
        target: one class for all images or one per image (an int, a sequence, an integer tensor or
            ``objectives.class_logit(c)``).
        maps: ``(N, H, W)`` (or ``(N, C, H, W)``, see :func:`as_map`; one ``(H, W)`` map for one image); ties are
            deleted in raster order.
        steps: points of the curve after the start.
        baseline: a value in the NORMALIZED space (unlike :func:`helpers.render`'s ``fill``, a pixel value), a
            tensor like ``images``, or ``"blur"`` (a Gaussian blur with std ``sigma`` px).
        sigma: blur std for ``baseline="blur"``.
        batch_size: perturbed copies per forward pass.

    Returns:
        :class:`Curve` (on the CPU), ``N`` rows (1 for a single image).

    Raises:
        ValueError: a grey/RGBA image (with the conversion), an image too small for the model (with the smallest
            size), a target out of range, maps of another shape.
    """
    x = as_batch(images, model)
    return _curve(model, x, _baseline_like(x, baseline, sigma), target, maps, steps, batch_size)


def insertion_curve(model: nn.Module, images: torch.Tensor, target: Target, maps: torch.Tensor, *,
                    steps: int = 16, baseline: float | torch.Tensor | str = BLUR, sigma: float = 4.0,
                    batch_size: int = 256) -> Curve:
    """Insertion curve (Petsiuk et al. 2018): start from a blurred copy and put the pixels back, most important
    first. A HIGH area under the curve is good. Arguments as in :func:`deletion_curve` (here ``baseline`` is the
    start image; Petsiuk et al. blur it, so the shapes are gone but the colours stay).

    Returns:
        :class:`Curve` (on the CPU).
    """
    x = as_batch(images, model)
    return _curve(model, _baseline_like(x, baseline, sigma), x, target, maps, steps, batch_size)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps ``(N, ...)`` (``scipy.stats.spearmanr``); NaN when a map is
    constant."""
    from scipy.stats import spearmanr

    a, b = a.flatten(1).double().cpu().numpy(), b.flatten(1).double().cpu().numpy()
    out = []
    for x, y in zip(a, b, strict=True):
        out.append(np.nan if x.min() == x.max() or y.min() == y.max() else spearmanr(x, y).statistic)
    return torch.tensor(out, dtype=torch.float32)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each pair of maps ``(N, H, W)`` (``skimage.metrics.structural_similarity``), each
    map first scaled to [0, 1] by its own minimum and maximum (a constant map becomes 0)."""
    from skimage.metrics import structural_similarity

    def unit(m: torch.Tensor) -> np.ndarray:
        m = m.double().cpu().numpy()
        span = m.max() - m.min()
        return (m - m.min()) / span if span > 0 else np.zeros_like(m)

    return torch.tensor([structural_similarity(unit(x), unit(y), data_range=1.0) for x, y in zip(a, b, strict=True)],
                        dtype=torch.float32)


@dataclass
class Randomization:
    """What :func:`cascading_randomization` returns (CPU tensors)."""

    layers: list[str]  # the layers randomized, top first; after step k the first k of them are random
    rank_correlation: torch.Tensor  # (len(layers) + 1, N) Spearman of |map| with the trained net's |map|; row 0 is 1
    ssim: torch.Tensor  # (len(layers) + 1, N) SSIM of the same pairs
    maps: list[torch.Tensor]  # len(layers) + 1 maps (N, H, W): trained, then after each randomization


def cascading_randomization(model: nn.Module, images: torch.Tensor, target: Target, method: Method, *,
                            seed: int = 0, layers: list[str] | None = None) -> Randomization:
    """Model-parameter randomization test (Adebayo et al. 2018), cascading from the top layer down.

    On a deep copy of ``model`` (the caller's model is untouched), the layers with parameters are
    re-initialized one after another with their own ``reset_parameters`` (their default random initialization),
    from the output towards the input, cumulatively. After each step the map is computed again and compared
    with the trained network's: Spearman rank correlation and SSIM of the absolute maps. A map that stays
    similar while the weights it should explain are destroyed does not explain the weights.

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits.
        images: ``(N, 3, H, W)`` normalized images (or one ``(3, H, W)``, a batch of one).
        target: one class for all images or one per image.
        method: ``(model, images, target) -> maps``, e.g. :func:`helpers.saliency_map`.
        seed: seeds the re-initialization (the global RNG is forked, so the caller's is untouched).
        layers: dotted names to randomize, top first; default every module with its own parameters and a
            ``reset_parameters``, in reverse registration order.

    Returns:
        :class:`Randomization`.
    """
    images = as_batch(images, model)
    clone = copy.deepcopy(model)
    if layers is None:
        layers = [name for name, m in clone.named_modules()
                  if list(m.parameters(recurse=False)) and hasattr(m, "reset_parameters")][::-1]
    modules = [clone.get_submodule(name) for name in layers]  # AttributeError names the missing one
    trained = as_map(method(clone, images, target)).abs().detach()
    maps, rho, sim = [trained.cpu()], [torch.ones(len(images))], [torch.ones(len(images))]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in modules:
            with torch.no_grad():
                module.reset_parameters()
            current = as_map(method(clone, images, target)).abs().detach()
            maps.append(current.cpu())
            rho.append(spearman(trained, current))
            sim.append(ssim(trained, current))
    return Randomization(list(layers), torch.stack(rho), torch.stack(sim), maps)


def attribution_methods(*, occlusion_patch: int = 8, occlusion_stride: int = 4,
                        layer: str | None = None) -> dict[str, Method]:
    """The course's attribution techniques as ``(model, images, target) -> maps`` callables, by display name:
    saliency, guided backprop, deconvnet, Grad-CAM, guided Grad-CAM (at ``layer``; None: the default layer)
    and occlusion (grey patches of ``occlusion_patch`` px every ``occlusion_stride`` px)."""
    return {
        "saliency": saliency_map,
        "guided backprop": guided_backprop,
        "deconvnet": deconvnet,
        "Grad-CAM": partial(grad_cam, layer=layer),
        "guided Grad-CAM": partial(guided_grad_cam, layer=layer),
        "occlusion": partial(occlusion_map, patch=occlusion_patch, stride=occlusion_stride, show_progress=False),
    }


def class_sensitivity(model: nn.Module, images: torch.Tensor, target: torch.Tensor, masks: torch.Tensor,
                      methods: Mapping[str, Method] | None = None) -> dict[str, torch.Tensor]:
    """Does the map for class A fall on object A and the map for class B on object B?

    For each image with two objects of different classes, each method's map is computed for both classes.
    The map for class ``k`` "falls on" object ``k`` when its mean positive value per pixel is higher on object
    ``k`` than on the other object (a density, so a larger object gets no head start). An image is a hit when
    this holds for both classes. A method whose map does not change with the target class can hit at most one
    of the two, so it scores 0 by construction.

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits.
        images: ``(N, 3, H, W)`` normalized images with two objects (:func:`helpers.synthetic_two_object_images`),
            or one ``(3, H, W)``.
        target: ``(N, 2)`` the two objects' classes (``(2,)`` for one image).
        masks: bool ``(N, 2, H, W)``, each object's pixels (``(2, H, W)`` for one image).
        methods: name -> ``(model, images, target) -> maps``; default :func:`attribution_methods`.

    Returns:
        name -> bool ``(N,)`` hits (CPU).
    """
    images = as_batch(images, model)
    target, masks = torch.as_tensor(target), torch.as_tensor(masks)
    if len(images) == 1 and target.dim() == 1 and masks.dim() == 3:  # one image
        target, masks = target[None], masks[None]
    if masks.dim() != 4 or masks.shape[1] != 2 or target.shape != (len(images), 2):
        raise ValueError(f"need target (N, 2) and masks (N, 2, H, W) for N={len(images)} two-object images, "
                         f"got {tuple(target.shape)} and {tuple(masks.shape)}")
    methods = attribution_methods() if methods is None else methods
    masks = masks.to(images.device).float()
    area = masks.flatten(2).sum(2).clamp(min=1)  # (N, 2)
    hits = {}
    for name, method in methods.items():
        ok = torch.ones(len(images), dtype=torch.bool)
        for k in range(2):
            m = as_map(method(model, images, target[:, k].to(images.device))).clamp(min=0).detach()
            density = (m[:, None] * masks).flatten(2).sum(2) / area  # (N, 2): on object 0, on object 1
            ok &= (density[:, k] > density[:, 1 - k]).cpu()
        hits[name] = ok
    return hits


def localization_scores(model: nn.Module, images: torch.Tensor, target: Target, masks: torch.Tensor,
                        methods: Mapping[str, Method], *, steps: int = 16, batch_size: int = 256,
                        seed: int = 0, per_image: bool = False) -> dict[str, dict[str, float | torch.Tensor]]:
    """The table: for each method and a random-map baseline (uniform noise, seeded), the pointing game, mask
    energy, deletion AUC (lower is better) and insertion AUC (higher is better).

    Args:
        model: classifier mapping ``(N, 3, H, W)`` to logits.
        images: ``(N, 3, H, W)`` normalized images (or one ``(3, H, W)``).
        target: one class for all images or one per image.
        masks: bool ``(N, H, W)``, the object's pixels (``(H, W)`` for one image).
        methods: name -> ``(model, images, target) -> maps``, e.g. :func:`attribution_methods`.
        steps, batch_size: of the deletion and insertion curves.
        seed: seeds the random-map baseline.
        per_image: return each metric's ``(N,)`` per-image values (CPU) instead of their mean (for paired
            comparisons with the baseline); a map without positive values has a NaN energy.

    Returns:
        name -> {"pointing", "energy", "deletion", "insertion"} -> the mean over the images (NaN energies
        skipped), or the ``(N,)`` values with ``per_image``.
    """
    images = as_batch(images, model)
    n, _, h, w = images.shape
    masks = masks[None] if isinstance(masks, torch.Tensor) and masks.dim() == 2 and n == 1 else masks
    generator = torch.Generator().manual_seed(seed)
    all_maps = {name: as_map(method(model, images, target)).detach() for name, method in methods.items()}
    all_maps["random map"] = torch.rand(n, h, w, generator=generator).to(images.device)
    table = {}
    for name, maps in all_maps.items():
        values = {"pointing": pointing_game(maps, masks).cpu(), "energy": mask_energy(maps, masks).cpu(),
                  "deletion": deletion_curve(model, images, target, maps, steps=steps, batch_size=batch_size).auc,
                  "insertion": insertion_curve(model, images, target, maps, steps=steps, batch_size=batch_size).auc}
        table[name] = values if per_image else {k: torch.nanmean(v).item() for k, v in values.items()}
    return table


def axis_energy_ratio(images: torch.Tensor) -> torch.Tensor:
    """Spectral energy along x over spectral energy along y, per image: > 1 for vertical structures (bars whose
    intensity changes along x), < 1 for horizontal ones.

    The power spectrum of each image (colour channels summed, each channel's mean removed) is split into the
    frequencies with ``|f_x| > |f_y|`` and those with ``|f_y| > |f_x|``; the diagonal and the DC term count for
    neither.

    Args:
        images: ``(N, C, H, W)`` (or ``(N, H, W)``).

    Returns:
        ``(N,)`` float ratios (CPU).
    """
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x[:, None]
    power = torch.fft.fft2(x - x.mean(dim=(-2, -1), keepdim=True)).abs().square().sum(1)  # (N, H, W)
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(x.shape[-1]).abs()[None, :]
    along_x = (power * (fx > fy)).flatten(1).sum(1)
    along_y = (power * (fy > fx)).flatten(1).sum(1)
    return along_x / along_y.clamp(min=torch.finfo(along_y.dtype).tiny)


def orientation(images: torch.Tensor, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Direction of the dominant spatial frequency of each image and how dominant it is.

    The angle is the doubled-angle mean of the power spectrum, ``0.5 * atan2(2 sum P f_x f_y, sum P (f_x^2 -
    f_y^2))`` (the orientation of the spectrum's structure tensor), in degrees in [0, 180): 0 when the intensity
    changes along x (vertical bars), 90 along y (horizontal bars). The coherence, in [0, 1], is the length of
    that doubled-angle mean over the total power weighted by ``|f|^2``: 1 for perfect bars, 0 for an isotropic
    pattern. Colour channels are summed, each channel's mean removed.

    Args:
        images: ``(N, C, H, W)`` (or ``(N, H, W)``), e.g. filter weights ``(out, in, k, k)`` or images.
        size: zero-pad to ``size x size`` before the FFT (a finer frequency grid for small filters).

    Returns:
        ``(angles, coherence)``, both ``(N,)`` (CPU). Compare two angles with :func:`angle_difference`.
    """
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x[:, None]
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    s = (size, size) if size else tuple(x.shape[-2:])
    power = torch.fft.fft2(x, s=s).abs().square().sum(1)
    fy = torch.fft.fftfreq(s[0])[:, None]
    fx = torch.fft.fftfreq(s[1])[None, :]
    cos2 = (power * (fx.square() - fy.square())).flatten(1).sum(1)
    sin2 = (power * 2 * fx * fy).flatten(1).sum(1)
    total = (power * (fx.square() + fy.square())).flatten(1).sum(1)
    coherence = torch.hypot(cos2, sin2) / total.clamp(min=torch.finfo(total.dtype).tiny)
    return torch.rad2deg(0.5 * torch.atan2(sin2, cos2)) % 180, coherence


def dominant_orientation(images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """The angle of :func:`orientation` alone: ``(N,)`` degrees in [0, 180), 0 for vertical bars."""
    return orientation(images, size)[0]


def angle_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest difference of two orientations in degrees (mod 180), in [0, 90]."""
    d = (a - b).abs() % 180
    return torch.minimum(d, 180 - d)
