"""Models: torchvision's pretrained VGG16 / ResNet-18 with labelled offline stand-ins, and sheet 4's LeNet."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet18_Weights, VGG16_Weights, WeightsEnum

from .config import default_device, offline_opt_in


class OfflineStandInWarning(UserWarning):
    """An offline stand-in (random weights, synthetic data) is used instead of the real thing."""


warnings.simplefilter("always", OfflineStandInWarning)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


@dataclass(frozen=True)
class _Spec:
    builder: object
    weights: WeightsEnum


_MODELS = {
    "vgg16": _Spec(torchvision.models.vgg16, VGG16_Weights.IMAGENET1K_V1),
    "resnet18": _Spec(torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1),
}


def weights_path(weights: WeightsEnum) -> Path:
    """Where torchvision caches ``weights``: ``$TORCH_HOME/hub/checkpoints/<file name of the URL>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _unavailable_message(name: str, weights: WeightsEnum, reason: str) -> str:
    path = weights_path(weights)
    return (
        f"pretrained {name} weights are not cached and could not be downloaded ({reason}). "
        f"Place them by hand: download {weights.url} on a machine with internet and save it as {path} "
        f"(keep that exact file name; $TORCH_HOME moves the folder). Or set CNNVIS_OFFLINE=1 to run with "
        f"random weights as a clearly labelled stand-in."
    )


def pretrained_model(name: str, pretrained: bool = True, *, device: torch.device | str | None = None,
                     seed: int | None = 0) -> nn.Module:
    """VGG16 or ResNet-18 from torchvision's weights API, in eval mode.

    Cached weights (``weights_path``) are always used. Missing ones are downloaded; if that fails, a
    :class:`WeightsUnavailableError` says where to put the file by hand, unless the user opted in with
    ``CNNVIS_OFFLINE=1``: then the network gets random weights and an :class:`OfflineStandInWarning`.

    The returned model carries ``model.categories`` (the 1000 ImageNet class names of the weights) and
    ``model.is_pretrained`` (False for random weights, requested or stand-in).

    Args:
        name: ``"vgg16"`` or ``"resnet18"``.
        pretrained: False gives torchvision's random initialisation (no download, no warning).
        device: where the model goes; default CUDA if available, else CPU.
        seed: seed of the random initialisation (the global RNG is left untouched); None = global RNG.

    Returns:
        The model in eval mode on ``device``.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_MODELS)}")
    spec = _MODELS[key]
    model = None
    if pretrained:
        path = weights_path(spec.weights)
        if path.exists() or not offline_opt_in():
            try:
                model = spec.builder(weights=spec.weights)
            except Exception as e:
                if path.exists():  # a truncated or foreign file, not a network problem
                    raise WeightsUnavailableError(
                        f"{path} exists but cannot be loaded ({type(e).__name__}: {e}); delete it and "
                        "download it again") from e
                if not isinstance(e, URLError | ConnectionError | TimeoutError):
                    raise
                if not offline_opt_in():
                    raise WeightsUnavailableError(_unavailable_message(key, spec.weights, str(e))) from e
        if model is None:
            warnings.warn(
                f"OFFLINE STAND-IN: pretrained {key} weights are not at {weights_path(spec.weights)}, "
                "so CNNVIS_OFFLINE=1 gives RANDOM weights. Results show an untrained network.",
                OfflineStandInWarning, stacklevel=2)
    if model is None:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = spec.builder(weights=None)
        model.is_pretrained = False
    else:
        model.is_pretrained = True
    model.categories = list(spec.weights.meta["categories"])
    return model.eval().to(default_device() if device is None else device)


class LeNet(nn.Module):
    """The LeNet-style CIFAR-10 classifier of exercise sheet 4 (62,006 trainable parameters).

    conv 6@5x5 + ReLU, max-pool 2/2, conv 16@5x5 + ReLU, max-pool 2/2, fc 120 + ReLU, fc 84 + ReLU, fc 10.
    Input ``(N, 3, 32, 32)``, output logits ``(N, 10)``.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, kernel_size=5),   # 32 -> 28
            nn.ReLU(),
            nn.MaxPool2d(2, 2),               # 28 -> 14
            nn.Conv2d(6, 16, kernel_size=5),  # 14 -> 10
            nn.ReLU(),
            nn.MaxPool2d(2, 2),               # 10 -> 5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
