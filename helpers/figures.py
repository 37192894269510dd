"""What a notebook does with a finished result: save its figure under ``figures/``, and say under it when it
rests on an offline stand-in.

Call these from notebook cells, never from inside a computation: the techniques return tensors and plots
return figures; only the notebook decides what is written to disk or printed.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure, SubFigure

from . import config


def save_figure(fig: Figure | SubFigure, name: str, *, dpi: float = 110, pad_inches: float = 0.1) -> Path:
    """Write a figure to ``figures/<name>.png`` as the notebook shows it, creating the folder.

    Like Jupyter's inline display, the file is the figure's drawn content plus a ``pad_inches`` margin
    (``bbox_inches="tight"``): a figure filled to its edges gives ``(figsize + 2 * pad_inches) * dpi`` pixels,
    and a title wider than the figure is kept, not cut off.

    Args:
        fig: the figure (a SubFigure saves the whole figure it belongs to).
        name: the file name without folder or extension, e.g. ``"sheet5_task13_filters"``.
        dpi: pixels per inch.
        pad_inches: the margin around the content.

    Returns:
        The path written.
    """
    if not name.strip(".") or Path(name).name != name or name.endswith(".png"):
        raise ValueError(f"name must be a bare file name without folder or .png, e.g. 'sheet5_filters'; got {name!r}")
    folder = Path(config.FIGURES_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    # format= given: matplotlib then writes exactly `path` (it would append .png to a name it sees no suffix in)
    fig.get_figure(root=True).savefig(path, format="png", dpi=dpi, bbox_inches="tight", pad_inches=pad_inches)
    return path


def print_stand_in_note(*things: object) -> None:
    """Print :func:`helpers.stand_in_note`'s loud line under a result when any of ``things`` is an offline
    stand-in (a model with RANDOM weights, the SYNTHETIC data); print nothing when all of them are real.

    Args:
        things: the models (``is_pretrained``) and datasets (``is_synthetic``) the result rests on.
    """
    line = config.stand_in_note(*things)
    if line:
        print(line)
