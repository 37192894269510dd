"""The project's switches (environment variables), the device, and progress bars.

Every notebook and script reads its switches through these functions, so one variable changes them all:

| variable | effect |
| --- | --- |
| ``CNNVIS_QUICK=1`` | shrink every long computation (steps, epochs, subsets, sizes) to seconds |
| ``CNNVIS_OFFLINE=1`` | allow the offline stand-ins (random weights, synthetic CIFAR-10) when the real files are
  not on disk; the real files are always used when present |
| ``CNNVIS_PROGRESS=0`` | no progress bars (headless runs, PDF export); ``TQDM_DISABLE=1`` does the same |
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
FIGURES_DIR = PROJECT_ROOT / "figures"

_FALSE = {"", "0", "false", "no", "off"}


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in _FALSE


def quick_mode() -> bool:
    """True when ``CNNVIS_QUICK`` is set to a true value (1, yes, true, on)."""
    return _flag("CNNVIS_QUICK")


def offline_opt_in() -> bool:
    """True when the user allowed offline stand-ins with ``CNNVIS_OFFLINE=1``."""
    return _flag("CNNVIS_OFFLINE")


def progress_enabled() -> bool:
    """False when ``CNNVIS_PROGRESS=0`` or ``TQDM_DISABLE=1``."""
    return _flag("CNNVIS_PROGRESS", default=True) and not _flag("TQDM_DISABLE")


def pick(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``full`` otherwise (for a notebook's parameters cell)."""
    return quick if quick_mode() else full


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str | None = None,
             leave: bool = True, enabled: bool | None = None):
    """A ``tqdm.auto`` progress bar that obeys the project's switch.

    ``tqdm.auto`` passes ``disable=`` itself, so ``TQDM_DISABLE`` alone does not silence notebook bars;
    every bar of the project goes through here instead.

    Args:
        iterable: what to iterate over (or None for a manually updated bar).
        total: number of items when ``iterable`` has no length.
        desc: label shown before the bar.
        leave: keep the finished bar on screen.
        enabled: force the bar on or off; None follows ``progress_enabled()``.
    """
    from tqdm.auto import tqdm

    disable = not (progress_enabled() if enabled is None else enabled)
    return tqdm(iterable, total=total, desc=desc, leave=leave, disable=disable)


def stand_in_note(*things: object) -> str:
    """One loud line naming the offline stand-ins among models and datasets, or "" when all are real.

    Looks at ``model.is_pretrained`` (see ``pretrained_model``) and ``dataset.is_synthetic`` (see
    ``cifar10_dataset``); print it under every result that depends on them.
    """
    parts = []
    for thing in things:
        if getattr(thing, "is_pretrained", True) is False:
            parts.append(f"{type(thing).__name__} has RANDOM weights")
        if getattr(thing, "is_synthetic", False):
            parts.append("the data is the SYNTHETIC CIFAR-format stand-in, not CIFAR-10")
    if not parts:
        return ""
    return ("OFFLINE STAND-IN: " + "; ".join(parts)
            + ". Read the figures as what such a run shows, not as the real result.")
