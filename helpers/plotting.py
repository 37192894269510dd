"""Display only: every function takes ``ax=None`` and returns the Axes; nothing here computes a result."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes

from .images import to_image
from .training import History


def _axes(ax: Axes | None) -> Axes:
    return plt.subplots()[1] if ax is None else ax


def show_image(x: torch.Tensor, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show a normalized image ``(3, H, W)`` or ``(1, 3, H, W)`` (see :func:`helpers.to_image`)."""
    ax = _axes(ax)
    ax.imshow(to_image(x))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_accuracy(histories: dict[str, History], ax: Axes | None = None, *, train: bool = True,
                  test: bool = True, title: str | None = None) -> Axes:
    """Accuracy per epoch of one or more training runs (x: epoch, y: accuracy in %), with a legend."""
    ax = _axes(ax)
    for name, h in histories.items():
        if train:
            ax.plot(h.epochs, [100 * a for a in h.train_acc], "--o", label=f"{name}: train")
        if test and h.test_acc:
            ax.plot(h.epochs[: len(h.test_acc)], [100 * a for a in h.test_acc], "-o", label=f"{name}: test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax
