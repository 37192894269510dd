"""A trained stand-in whose evidence is known: a small CNN trained here on the synthetic shapes with masks.

Nobody can download pretrained weights on an offline machine, and random weights say nothing about whether
an attribution technique finds the evidence a *trained* network uses. This module trains, in about a minute
on two CPU cores, a small CNN on :func:`helpers.synthetic_images_with_masks` (where every image comes with the
mask of its object), deterministic by seed, and caches it under ``data/`` (the file name holds the settings
and a version, so a change retrains). The network ends in global average pooling, like ResNet, so Grad-CAM
has a natural layer: :func:`helpers.default_cam_layer` finds its last ReLU, ``"features.9"`` (8x8).
Inputs are ImageNet-normalized like every other model of the project (:func:`helpers.normalize`).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .._checks import as_batch, finite_number, positive_int
from ..config import DATA_DIR
from ..data import SYNTHETIC_CLASSES, synthetic_images_with_masks, synthetic_two_object_images
from ..hooks import frozen_eval
from ..images import normalize
from ..toolbox.ascent import visualize_filter
from ..toolbox.classviz import visualize_class
from ..toolbox.deepdream import deep_dream
from ..training import evaluate, fit
from .scores import angle_difference, axis_energy_ratio, orientation

VERSION = 1  # bump when the architecture, the data or the training loop changes: the cache is rebuilt


class GapCNN(nn.Module):
    """Four convolutions and global average pooling: ``(N, 3, H, W)`` normalized images -> ``(N, 10)`` logits.

    conv 16@5x5 + ReLU, max-pool 2, conv 32@3x3 + ReLU, conv 32@3x3 + ReLU, max-pool 2, conv 64@3x3 + ReLU,
    global average pooling, linear 64 -> 10 (``width`` = 16). Any image size works (the 32x32 single-object and
    the 32x48 two-object images); Grad-CAM's layer ``"features.9"`` is 8x8 for a 32x32 image.
    """

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 5, padding=2), nn.ReLU(),               # 0, 1: full resolution
            nn.MaxPool2d(2),                                            # 2: 1/2
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),       # 3, 4
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),   # 5, 6
            nn.MaxPool2d(2),                                            # 7: 1/4
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(),   # 8, 9: Grad-CAM's layer
        )
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class StandInSettings:
    """What the trained stand-in depends on; the cache file name is a hash of these and :data:`VERSION`."""

    n_train: int = 6000  # synthetic training images
    n_test: int = 1000  # synthetic test images (another seed)
    epochs: int = 5  # passes over the training images
    batch_size: int = 64
    lr: float = 3e-3  # Adam's learning rate
    width: int = 16  # channels of the first convolution (GapCNN doubles it twice)
    seed: int = 0  # seeds the data, the initial weights and the batch order

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "epochs", "batch_size", "width"):  # 0 epochs would cache an untrained model
            positive_int(getattr(self, name), f"StandInSettings.{name}")
        positive_int(self.seed, "StandInSettings.seed", minimum=0)
        finite_number(self.lr, "StandInSettings.lr", positive=True)

    def key(self) -> str:
        text = repr(sorted(asdict(self).items())) + f"v{VERSION}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class StandIn:
    """The trained stand-in and what it was trained on."""

    model: GapCNN  # in eval mode, on the CPU
    test_accuracy: float  # accuracy on the synthetic test images, in [0, 1]
    settings: StandInSettings
    path: Path  # the cache file
    seconds: float  # training wall time (0.0 when loaded from the cache)
    loaded: bool  # True when read from the cache
    classes: tuple[str, ...] = SYNTHETIC_CLASSES
    is_synthetic: bool = True  # for helpers.stand_in_note: the data is the synthetic stand-in


def to_tensors(images, labels=None, masks=None) -> tuple[torch.Tensor, ...]:
    """uint8 ``(N, H, W, 3)`` images -> ImageNet-normalized float ``(N, 3, H, W)``; labels and masks as tensors.

    Returns:
        ``(x,)`` or ``(x, labels, masks)`` with the ones given: long labels, bool masks (shapes kept).
    """
    x = normalize(torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255))
    out = [x]
    if labels is not None:
        out.append(torch.from_numpy(labels).long())
    if masks is not None:
        out.append(torch.from_numpy(masks).bool())
    return tuple(out)


def synthetic_split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` synthetic single-object images as tensors: normalized ``(N, 3, 32, 32)``, labels ``(N,)``, masks
    ``(N, 32, 32)``."""
    return to_tensors(*synthetic_images_with_masks(n, seed))


def two_object_split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` synthetic two-object images as tensors: normalized ``(N, 3, 32, 48)``, labels ``(N, 2)``, masks
    ``(N, 2, 32, 48)``."""
    return to_tensors(*synthetic_two_object_images(n, seed))


def trained_stand_in(settings: StandInSettings | None = None, *, root: str | Path | None = None,
                     retrain: bool = False, show_progress: bool | None = None) -> StandIn:
    """The small GAP CNN trained on the synthetic shapes: loaded from ``<root>/groundtruth-<key>.pt``, or trained
    (deterministic by ``settings.seed``) and cached there when the file is missing.

    Training uses :func:`helpers.fit` (Adam, cross-entropy) with one torch thread count fixed per call and
    the global RNG forked, so the caller's random state is untouched. The cache is written to a temporary file of
    its own (unique per writer) and moved into place with an atomic ``os.replace``, so two processes training the
    same stand-in both succeed and a reader never sees half a file. An unreadable cache file is an error naming it
    and ``retrain=True``, never silently overwritten (it is not a half-write of ours, so something else changed it).

    Args:
        settings: data and training settings; default :class:`StandInSettings()`.
        root: cache folder; default the project's ``data/``.
        retrain: train even when the cache file exists (and overwrite it).
        show_progress: progress bars of the training; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`StandIn` with the model (eval mode, CPU) and its test accuracy.

    Raises:
        ValueError: ``root`` is not a folder; the cache file cannot be read (delete it or pass ``retrain=True``).
    """
    settings = StandInSettings() if settings is None else settings
    if not isinstance(settings, StandInSettings):
        raise TypeError(f"settings must be a StandInSettings (or None), got {type(settings).__name__}")
    folder = Path(DATA_DIR if root is None else root).expanduser()
    try:  # before training: a root that is a file fails now, not after a minute of training
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"root={str(folder)!r} is not a folder (it or a parent is a file): pass the folder to keep "
                         "the stand-in's cache in, or None for the project's data/") from None
    path = folder / f"groundtruth-{settings.key()}.pt"
    if path.exists() and not retrain:
        with torch.random.fork_rng(devices=[]):  # the initial weights drawn here are overwritten at once
            model = GapCNN(len(SYNTHETIC_CLASSES), settings.width)
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["state_dict"])
            accuracy = float(saved["test_accuracy"])
        except Exception as e:  # garbage, empty, truncated, another format: the file, not the code, is wrong
            raise ValueError(f"the stand-in cache {path} is unreadable (empty, truncated or not this stand-in's "
                             f"torch.save file: {type(e).__name__}); delete it or call trained_stand_in(..., "
                             "retrain=True) to train and write it again") from e
        return StandIn(model.eval(), accuracy, settings, path, 0.0, True)
    x, y, _ = synthetic_split(settings.n_train, settings.seed)
    x_test, y_test, _ = synthetic_split(settings.n_test, settings.seed + 1)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = GapCNN(len(SYNTHETIC_CLASSES), settings.width)
        order = torch.Generator().manual_seed(settings.seed)
        train = DataLoader(TensorDataset(x, y), batch_size=settings.batch_size, shuffle=True, generator=order)
        fit(model, train, None, settings.epochs, lr=settings.lr, show_progress=show_progress)
        seconds = time.perf_counter() - start
        model.eval()
        # (a DataLoader draws a seed from the global RNG even when it does not shuffle: inside the fork too)
        accuracy = evaluate(model, DataLoader(TensorDataset(x_test, y_test), batch_size=500))
    # a temporary name of this writer's own, then an atomic replace: an interrupted save leaves no half-written
    # cache behind, and two processes training the same stand-in never rename each other's file
    partial = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    try:
        torch.save({"state_dict": model.state_dict(), "test_accuracy": accuracy, "settings": asdict(settings),
                    "version": VERSION}, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return StandIn(model, accuracy, settings, path, seconds, False)


@dataclass
class SynthesisChecks:
    """What :func:`synthesis_checks` measured on a trained stand-in (plain floats, and the images for figures)."""

    class_ratio: dict[str, float]  # class name -> spectral energy along x / along y of its class visualization
    class_images: torch.Tensor  # (2, 3, H, W) the class visualizations (vertical, horizontal stripes)
    filter_channel: int  # the first-layer channel with the most oriented weights
    weight_angle: float  # orientation of that channel's 5x5 weights, degrees (0: changes along x)
    visualization_angle: float  # orientation of its filter visualization, degrees
    filter_image: torch.Tensor  # (1, 3, H, W) the filter visualization
    angle_error: float  # smallest difference of the two angles, degrees in [0, 90]
    dream_gain_present: float  # mean change of the centred logit (logit - the image's mean logit), classes present
    dream_gain_absent: float  # the same for the other classes
    dream_images: torch.Tensor  # (N, 3, H, W) the dreamed images


VERTICAL, HORIZONTAL = SYNTHETIC_CLASSES.index("vertical stripes"), SYNTHETIC_CLASSES.index("horizontal stripes")


def synthesis_checks(model: nn.Module, images: torch.Tensor, target: torch.Tensor, *, class_steps: int = 200,
                     filter_steps: int = 100, dream_steps: int = 10, size: int = 32, seed: int = 0,
                     first_conv: str = "features.0", first_relu: str = "features.1",
                     dream_layer: str = "features.9", amp: bool = False,
                     channels_last: bool | None = None) -> SynthesisChecks:
    """The synthesis techniques checked against what the trained stand-in is known to encode.

    1. Class visualization (plain L2, :func:`helpers.visualize_class`) of the vertical- and the horizontal-stripes
       class: :func:`helpers.axis_energy_ratio` of each image (> 1: energy along x, i.e. vertical structure).
    2. Filter visualization (:func:`helpers.visualize_filter` of ``first_relu``, the ReLU after ``first_conv``) of
       the channel whose weights are most oriented (largest :func:`helpers.trust.scores.orientation` coherence):
       the angle of the weights and of the visualization.
    3. DeepDream (:func:`helpers.deep_dream` on ``dream_layer``) on ``images``: the mean change of the centred
       logits (each logit minus the mean of the image's logits) of the classes present in each image
       (``target``) and of the others. Centred, not raw: amplifying the activations shifts every logit by a
       shared amount (all of them may drop), which no softmax sees; only the change relative to the other
       classes says which class gained.

    The model is left as found (every technique restores it).

    Args:
        model: the trained :class:`GapCNN` (or any model with the same class order and layer names).
        images: ``(N, 3, H, W)`` normalized images for DeepDream, e.g. two-object images (or one ``(3, H, W)``).
        target: ``(N,)`` or ``(N, K)`` the classes present in each image.
        class_steps, filter_steps, dream_steps: optimizer steps of the three techniques.
        size: side of the class and filter visualizations.
        seed: seeds the start noise and the jitter.
        amp, channels_last: passed to the three ascents (bfloat16 autocast; channels-last convolutions, None: on
            the CPU yes, on a GPU no).

    Returns:
        :class:`SynthesisChecks`.
    """
    images = as_batch(images, model)
    fast = {"amp": amp, "channels_last": channels_last}
    viz = visualize_class(model, [VERTICAL, HORIZONTAL], start=size, steps=class_steps, lr=0.05,
                          l2_weight=1e-2 * size * size, seed=seed, **fast)  # per pixel: 1e-2 on the sum at `size` px
    ratio = axis_energy_ratio(viz.image)
    conv = model.get_submodule(first_conv)
    angles, coherence = orientation(conv.weight, size=16)
    channel = int(coherence.argmax())
    filt = visualize_filter(model, first_relu, channel, steps=filter_steps, lr=0.05, start=size,
                            fill=(150 / 255, 180 / 255), clamp=True, seed=seed, **fast)  # the course code's start
    seen = orientation(filt.image)[0]
    with torch.no_grad(), frozen_eval(model):
        before = model(images)
        before = before - before.mean(1, keepdim=True)
    dream = deep_dream(model, images, dream_layer, steps=dream_steps, lr=0.02, octaves=2, jitter=2, seed=seed, **fast)
    with torch.no_grad(), frozen_eval(model):
        after = model(dream.image)
        gain = after - after.mean(1, keepdim=True) - before
    present = torch.zeros_like(gain, dtype=torch.bool)
    present.scatter_(1, torch.as_tensor(target).view(len(images), -1).to(gain.device), True)
    return SynthesisChecks(
        class_ratio={SYNTHETIC_CLASSES[VERTICAL]: ratio[0].item(), SYNTHETIC_CLASSES[HORIZONTAL]: ratio[1].item()},
        class_images=viz.image.cpu(), filter_channel=channel, weight_angle=angles[channel].item(),
        visualization_angle=seen[0].item(), filter_image=filt.image.cpu(),
        angle_error=angle_difference(angles[channel], seen[0]).item(),
        dream_gain_present=gain[present].mean().item(), dream_gain_absent=gain[~present].mean().item(),
        dream_images=dream.image.cpu())
