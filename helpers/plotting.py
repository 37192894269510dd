"""The notebooks' figures; display only: nothing here computes a result.

Two contracts, by what a plot draws:

- axes-level plots (``show_image``, ``plot_map``, ``plot_overlay``, ``plot_gradient_image``, ``plot_accuracy``,
  ``plot_objective``, ``plot_filters``, ``plot_embedding``) draw into one Axes: they take ``ax=None`` (None: a
  new figure with one Axes) and return the Axes they drew into, so they compose into any layout;
- figure-level composites (``plot_image_grid``, ``plot_filter_grid``, ``plot_channels``, ``plot_saliency``,
  ``plot_patches``, ``plot_neighbors``, ``plot_fooling``) lay out several Axes: they take ``fig=None`` (a
  Figure or a SubFigure, cleared first; None: a new figure) and return that figure.

Every tensor reaches the screen through one conversion (:func:`helpers.to_image`): ImageNet-normalized images (the
networks' inputs, :func:`helpers.load_image`) are denormalized, display-space images (CIFAR-10 before
normalization, maps already in [0, 1]) are not; both are clipped to [0, 1]. Save a figure with
:func:`helpers.save_figure`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure, SubFigure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from torchvision.utils import make_grid

from .filters import range_map, symmetric_scale
from .images import display_pixels, to_image
from .training import History

FigureLike = Figure | SubFigure


def _axes(ax: Axes | None) -> Axes:
    return plt.subplots()[1] if ax is None else ax


def _figure(fig: FigureLike | None, figsize: tuple[float, float]) -> FigureLike:
    """The figure a composite draws into: ``fig`` cleared, or a new constrained-layout figure of ``figsize``."""
    if fig is None:
        return plt.figure(figsize=figsize, layout="constrained")
    fig.clear()
    return fig


def show_image(x: torch.Tensor, ax: Axes | None = None, title: str | None = None, *,
               normalized: bool = True) -> Axes:
    """Show one image ``(3, H, W)`` or ``(1, 3, H, W)``: ImageNet-normalized by default (see
    :func:`helpers.to_image`), or already in display space [0, 1] with ``normalized=False`` (e.g.
    :func:`helpers.pca_rgb`)."""
    ax = _axes(ax)
    ax.imshow(to_image(x, normalized=normalized))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_accuracy(histories: dict[str, History], ax: Axes | None = None, *, train: bool = True,
                  test: bool = True, title: str | None = None) -> Axes:
    """Accuracy per epoch of one or more training runs (x: epoch, y: accuracy in %), with a legend.

    Each run keeps one colour (the ``i``-th of matplotlib's cycle for the ``i``-th run), in every panel drawn with
    the same ``histories``: training accuracy (each epoch's running value, see :class:`History`) dashed, test
    accuracy solid."""
    ax = _axes(ax)
    for i, (name, h) in enumerate(histories.items()):
        if train:
            ax.plot(h.epochs, [100 * a for a in h.train_acc], "--o", color=f"C{i}", label=f"{name}: train (running)")
        if test and h.test_acc:
            ax.plot(h.epochs[: len(h.test_acc)], [100 * a for a in h.test_acc], "-o", color=f"C{i}",
                    label=f"{name}: test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


# --- image grids: one layout for display-space and normalized images ----------------------------------------


def _image_grid(rows: list, *, normalized: bool, fig: FigureLike | None, figsize: tuple[float, float],
                n_cols: int | None = None, titles: list[list[str]] | None = None, col_labels: list[str] | None = None,
                row_labels: list[str] | None = None, title: str | None = None, title_size: float = 8,
                horizontal_row_labels: bool = False) -> FigureLike:
    """Rows of images, one Axes per cell (empty cells stay blank); what both public grids draw."""
    n_cols = n_cols or max((len(row) for row in rows), default=1)
    fig = _figure(fig, figsize)
    axes = fig.subplots(max(1, len(rows)), n_cols, squeeze=False)
    for r, axes_row in enumerate(axes):
        row = rows[r] if r < len(rows) else []
        for c, ax in enumerate(axes_row):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.spines[:].set_visible(False)
            if c >= len(row):
                continue
            ax.imshow(to_image(row[c], normalized=normalized))
            label = titles[r][c] if titles is not None and r < len(titles) and c < len(titles[r]) else None
            if label is None and r == 0 and col_labels is not None and c < len(col_labels):
                label = col_labels[c]
            if label:
                ax.set_title(label, fontsize=title_size)
        if row_labels is not None and r < len(row_labels):
            style = {"rotation": 0, "ha": "right", "va": "center"} if horizontal_row_labels else {}
            axes_row[0].set_ylabel(row_labels[r], fontsize=9, **style)
    if title:
        fig.suptitle(title)
    return fig


def plot_image_grid(images, titles: list[str] | None = None, *, ncols: int = 10,
                    row_labels: list[str] | None = None, size: float = 1.2, fig: FigureLike | None = None,
                    suptitle: str | None = None, normalized: bool = False) -> FigureLike:
    """A grid of images filled row by row, ``ncols`` per row; display space ([0, 1], e.g. CIFAR-10 tensors
    before normalization) by default.

    Args:
        images: ``(N, 3, H, W)`` tensor or a list of ``(3, H, W)`` / ``(H, W, 3)`` images.
        titles: one small title per image (e.g. its class name), or None.
        ncols: images per row.
        row_labels: one label per row, written left of the row (e.g. the class of the row).
        size: inches per image.
        fig: draw into this Figure or SubFigure (cleared) instead of a new one.
        suptitle: title of the whole figure.
        normalized: the images are ImageNet-normalized (as :func:`plot_filter_grid` assumes).

    Returns:
        The figure drawn into.
    """
    n = len(images)
    rows = [list(images[i:i + ncols]) for i in range(0, n, ncols)]
    nested = None if titles is None else [list(titles[i:i + ncols]) for i in range(0, n, ncols)]
    figsize = (ncols * size, max(1, len(rows)) * size * (1.25 if titles else 1.0) + 0.4)
    return _image_grid(rows, normalized=normalized, fig=fig, figsize=figsize, n_cols=ncols, titles=nested,
                       row_labels=row_labels, title=suptitle, title_size=7, horizontal_row_labels=True)


def plot_filter_grid(images: torch.Tensor | list[list[torch.Tensor]], *,
                     row_labels: list[str] | None = None, col_labels: list[str] | None = None,
                     titles: list[list[str]] | None = None, title: str | None = None,
                     cell_size: float = 1.8, fig: FigureLike | None = None, normalized: bool = True) -> FigureLike:
    """A grid of ImageNet-normalized images (e.g. filter visualizations) given row by row, with row and column
    labels.

    Args:
        images: ``(R, C, 3, H, W)`` or ``(C, 3, H, W)`` (one row), or a list of rows of ``(3, H, W)`` /
            ``(1, 3, H, W)`` tensors (rows may differ in length and image size).
        row_labels: one label per row (left of the row).
        col_labels: one label per column (above the first row).
        titles: a title per image (``titles[r][c]``), shown above it; overrides ``col_labels`` where given.
        title: the figure's title.
        cell_size: inches per image (of a new figure).
        fig: draw into this Figure or SubFigure (cleared) instead of a new one, e.g. one panel of
            ``plt.figure().subfigures(1, 2)``.
        normalized: False for images in display space [0, 1] (as :func:`plot_image_grid` assumes).

    Returns:
        The figure drawn into.
    """
    if isinstance(images, torch.Tensor):
        images = images.unsqueeze(0) if images.dim() == 4 else images
        if images.dim() != 5:
            raise ValueError(f"expected (R, C, 3, H, W) or (C, 3, H, W), got {tuple(images.shape)}")
    rows = [list(row) for row in images]
    n_rows, n_cols = len(rows), max((len(row) for row in rows), default=1)
    figsize = (cell_size * n_cols + (0.8 if row_labels else 0), cell_size * n_rows + (0.5 if title else 0.2))
    return _image_grid(rows, normalized=normalized, fig=fig, figsize=figsize, titles=titles, col_labels=col_labels,
                       row_labels=row_labels, title=title)


# --- sheet 4: activation maps, overlays and saliency (display only) -----------------------------------------


def _mark_constant(ax: Axes, m: torch.Tensor) -> None:
    """Say so on the panel when a map has one value everywhere (e.g. an all-zero Grad-CAM): a colour map draws
    it as one uniform colour, which reads like a strong or a weak map depending on the colour map."""
    if m.numel() and m.min() == m.max():
        ax.text(0.5, 0.5, f"constant map:\n{m.flatten()[0].item():.3g} everywhere", transform=ax.transAxes,
                ha="center", va="center", fontsize="small", bbox={"facecolor": "white", "alpha": 0.8})


def _minmax(t: torch.Tensor) -> torch.Tensor:
    low, high = t.min(), t.max()
    return (t - low) / (high - low) if high > low else torch.zeros_like(t)


def plot_map(m, ax: Axes | None = None, *, title: str | None = None, cmap: str = "viridis",
             colorbar: bool = True, label: str | None = None) -> Axes:
    """One activation map: ``(H, W)`` as a colour-mapped image with a colorbar of its true values (``label``
    names them), or ``(3, H, W)`` (e.g. three PCA components) as RGB with each channel min-max scaled to [0, 1]."""
    ax = _axes(ax)
    t = torch.as_tensor(m).detach().float().cpu()
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 3 and t.shape[0] == 3:
        ax.imshow(to_image(torch.stack([_minmax(c) for c in t]), normalized=False))
    elif t.dim() == 2:
        im = ax.imshow(t.numpy(), cmap=cmap)
        _mark_constant(ax, t)
        if colorbar:
            cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            if label:
                cb.set_label(label)
    else:
        raise ValueError(f"expected a map (H, W) or (3, H, W), got shape {tuple(t.shape)}")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_overlay(image: torch.Tensor, heat, ax: Axes | None = None, *, alpha: float = 0.5, cmap: str = "jet",
                 title: str | None = None, colorbar: bool = True, label: str | None = None) -> Axes:
    """A heat map drawn semi-transparently over a normalized image (see :func:`helpers.to_image`).

    Args:
        image: ImageNet-normalized ``(3, H, W)`` or ``(1, 3, H, W)``.
        heat: ``(H, W)`` (or ``(1, H, W)``) at the image's resolution; upsample it first
            (:func:`helpers.upsample_map`).
        alpha: opacity of the heat map.
        colorbar: add a colorbar with the heat map's values; ``label`` names them.
    """
    ax = _axes(ax)
    img = to_image(image, normalized=True)
    h = torch.as_tensor(heat).detach().float().cpu()
    h = h[0] if h.dim() == 3 and h.shape[0] == 1 else h
    if tuple(h.shape) != img.shape[:2]:
        raise ValueError(f"heat map {tuple(h.shape)} and image {img.shape[:2]} differ in size; "
                         "resample the map first with helpers.upsample_map(maps, size)")
    ax.imshow(img)
    im = ax.imshow(h.numpy(), cmap=cmap, alpha=alpha)
    _mark_constant(ax, h)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if label:
            cb.set_label(label)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_saliency(image: torch.Tensor, saliency, axes=None, *, title: str | None = None, cmap: str = "hot",
                  fig: FigureLike | None = None) -> FigureLike:
    """The image and its saliency map side by side, the map with a colorbar.

    Args:
        image: ImageNet-normalized ``(3, H, W)`` or ``(1, 3, H, W)``.
        saliency: ``(H, W)`` or ``(1, H, W)``, e.g. from :func:`helpers.saliency_map`.
        axes: two Axes to draw into instead (then the figure holding them is returned).
        title: title of the saliency panel.
        fig: draw into this Figure or SubFigure (cleared) instead of a new one.

    Returns:
        The figure drawn into.
    """
    if axes is None:
        fig = _figure(fig, (9, 4))
        axes = fig.subplots(1, 2)
    show_image(image, axes[0], title="image")
    s = torch.as_tensor(saliency).detach().float().cpu()
    plot_map(s[0] if s.dim() == 3 else s, axes[1], title=title or "saliency", cmap=cmap,
             label="|d score / d pixel|, max over RGB")
    return axes[0].figure if fig is None else fig


def plot_channels(act, channels: list[int] | None = None, *, ncols: int = 8, size: float = 1.5,
                  fig: FigureLike | None = None, cmap: str = "viridis", title: str | None = None) -> FigureLike:
    """Channels of one activation tensor ``(C, H, W)`` (or ``(1, C, H, W)``) as tiles, each tile min-max
    scaled on its own (so compare patterns within a tile, not brightness across tiles).

    Args:
        act: the activations of one image.
        channels: which channels (default the first ``ncols * 2``).
        ncols: tiles per row.
        fig: draw into this Figure or SubFigure (cleared) instead of a new one.

    Returns:
        The figure drawn into.
    """
    a = torch.as_tensor(act).detach().float().cpu()
    a = a[0] if a.dim() == 4 and a.shape[0] == 1 else a
    if a.dim() != 3:
        raise ValueError(f"expected the activations of one image (C, H, W), got shape {tuple(a.shape)}")
    channels = list(range(min(2 * ncols, a.shape[0]))) if channels is None else list(channels)
    bad = [c for c in channels if not 0 <= c < a.shape[0]]
    if bad:
        raise ValueError(f"channels {bad} out of range: the tensor has {a.shape[0]} channels")
    nrows = max(1, -(-len(channels) // ncols))
    fig = _figure(fig, (ncols * size, nrows * size * 1.15))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(channels):
            ax.imshow(_minmax(a[channels[i]]).numpy(), cmap=cmap, vmin=0, vmax=1)
            ax.set_title(f"ch {channels[i]}", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# --- sheet 5: objective curves (display only) ---------------------------------------------------------------


def plot_objective(curves: dict[str, torch.Tensor], ax: Axes | None = None, *, ylabel: str = "objective",
                   xlabel: str = "step", title: str | None = None, logy: bool = False) -> Axes:
    """Objective curves of gradient-ascent runs (e.g. ``AscentResult.history``).

    Args:
        curves: ``{label: (steps,) or (steps, N)}``; a ``(steps, N)`` history is drawn as its mean over
            the N images with a band from its minimum to its maximum.
        ax: where to draw; None makes a new figure.
        ylabel, xlabel, title: axis labels and title.
        logy: logarithmic y axis.
    """
    ax = _axes(ax)
    for label, values in curves.items():
        v = values.detach().float().cpu()
        v = v.unsqueeze(1) if v.dim() == 1 else v
        steps = range(1, v.shape[0] + 1)
        (line,) = ax.plot(steps, v.mean(dim=1).numpy(), label=label)
        if v.shape[1] > 1:
            ax.fill_between(steps, v.amin(dim=1).numpy(), v.amax(dim=1).numpy(), color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("symlog")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


# --- gallery: inspection (filters, maximally activating patches, embeddings, neighbours; display only) ------


def plot_filters(weights: torch.Tensor, ax: Axes | None = None, *, mapping: str = "symmetric",
                 scale: float | None = None, max_filters: int = 64, max_channels: int = 16, ncols: int = 8,
                 title: str | None = None) -> Axes:
    """Convolution filters as tiles, the range mapping written in the title (and a colorbar of true weights
    for the symmetric mapping). 3-channel filters are RGB tiles; others one grayscale tile per input channel
    (a row per filter, a column per input channel).

    Args:
        weights: raw weights ``(C_out, C_in, k, k)``, e.g. from :func:`helpers.filter_weights`.
        ax: where to draw; None makes a new figure.
        mapping: ``"symmetric"`` or ``"minmax"`` (see :func:`helpers.range_map`).
        scale: shared scale of the symmetric mapping; default ``max |w|`` over ALL filters of ``weights``.
        max_filters: show the first ``max_filters`` filters.
        max_channels: show the first ``max_channels`` input channels of grayscale filters.
        ncols: RGB tiles per row.
        title: what the filters are (e.g. the layer name); the mapping is added below it.
    """
    w = torch.as_tensor(weights).detach().float().cpu()
    if w.dim() != 4:
        raise ValueError(f"expected filter weights (C_out, C_in, k, k), got shape {tuple(w.shape)}")
    ax = _axes(ax)
    s = (symmetric_scale(w) if scale is None else float(scale)) if mapping == "symmetric" else None
    n, c_in = min(w.shape[0], max_filters), w.shape[1]
    tiles = range_map(w[:n], mapping, scale=s)
    if c_in == 3:
        grid = make_grid(tiles, nrow=ncols, padding=1, pad_value=1.0)
        ax.imshow(to_image(grid, normalized=False), interpolation="nearest")
        what = f"{n} of {w.shape[0]} filters, RGB"
    else:
        c = min(c_in, max_channels)
        gray = tiles[:, :c].reshape(n * c, 1, *w.shape[-2:])
        grid = make_grid(gray, nrow=c, padding=1, pad_value=1.0)
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        what = f"rows: {n} of {w.shape[0]} filters, columns: {c} of {c_in} input channels"
    if mapping == "symmetric":
        how = f"symmetric, shared: 0 = grey, ±{s:.3g} = black/white"
        cb = ax.figure.colorbar(ScalarMappable(Normalize(-s, s), cmap="gray"), ax=ax, fraction=0.046, pad=0.04)
        cb.set_label("weight" + (" (per colour channel)" if c_in == 3 else ""))
    else:
        how = "per-filter min/max: min black, max white\n(brightness not comparable between filters)"
    ax.set_title(f"{title + chr(10) if title else ''}{what}\n{how}", fontsize=9)
    ax.set_axis_off()
    return ax


def plot_patches(result, *, channels: list[int] | None = None, size: float = 3.0, fig: FigureLike | None = None,
                 title: str | None = None) -> FigureLike:
    """The maximally activating patches of each channel, one panel (a grid of ``k`` patches) per channel.

    Args:
        result: a :class:`helpers.Patches` from :func:`helpers.max_activating_patches`.
        channels: which of its channels (default all).
        size: inches per panel.
        fig: draw into this Figure or SubFigure (cleared) instead of a new one.
        title: the figure's title (the window size and the border rule are added).

    Returns:
        The figure drawn into.
    """
    rows = list(range(len(result.channels))) if channels is None else [result.channels.index(c) for c in channels]
    k = result.patches.shape[1]
    nrow = max(1, int(round(k ** 0.5)))
    fig = _figure(fig, (size * len(rows), size + 0.9))
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for ax, r in zip(axes, rows, strict=True):
        pics = display_pixels(result.patches[r], normalized=True)
        ax.imshow(to_image(make_grid(pics, nrow=nrow, padding=2, pad_value=1.0), normalized=False))
        values = result.values[r]
        ax.set_title(f"channel {result.channels[r]}\nmax {values[0]:.3g}, k-th {values[-1]:.3g}", fontsize=9)
        ax.set_axis_off()
    h, w = result.patches.shape[-2:]
    note = f"{result.layer}: top {k} of each channel, {h}x{w} px receptive fields (grey = outside the image)"
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
    return fig


def plot_embedding(coords: torch.Tensor, images: torch.Tensor | None = None, ax: Axes | None = None, *,
                   labels: list | None = None, thumb_px: int = 32, zoom: float = 1.0,
                   title: str | None = None) -> Axes:
    """A 2-D embedding (e.g. :func:`helpers.tsne_embedding`) with each image drawn as a thumbnail at its point.

    Args:
        coords: ``(N, 2)``.
        images: ``(N, 3, H, W)`` ImageNet-normalized (e.g. :func:`helpers.load_images`); None draws dots.
        labels: one label per point; colours the dots (and the thumbnails' frames).
        thumb_px: thumbnail side in pixels (images are downsampled first).
        zoom: scale of the thumbnails on screen.
    """
    ax = _axes(ax)
    xy = torch.as_tensor(coords).detach().float().cpu().numpy()
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"coords must be (N, 2), got shape {xy.shape}")
    colours = None
    if labels is not None:
        names = sorted(set(labels), key=str)
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        colours = [cmap(names.index(label) % cmap.N) for label in labels]
        for name in names:
            ax.scatter([], [], color=cmap(names.index(name) % cmap.N), label=str(name))
        ax.legend(fontsize=7, loc="best")
    ax.scatter(xy[:, 0], xy[:, 1], s=8, c=colours if colours else "k")
    if images is not None:
        if len(images) != len(xy):
            raise ValueError(f"{len(images)} images for {len(xy)} points; give one image per point")
        # resampling is linear, so downsampling before undoing the (per-channel affine) normalization is exact
        small = F.interpolate(torch.as_tensor(images).detach().float().cpu(), size=(thumb_px, thumb_px),
                              mode="bilinear", antialias=True, align_corners=False)
        for i, thumb in enumerate(small):
            box = AnnotationBbox(OffsetImage(to_image(thumb, normalized=True), zoom=zoom), xy[i],
                                 frameon=colours is not None, pad=0.1,
                                 bboxprops={"edgecolor": colours[i]} if colours else None)
            ax.add_artist(box)
    ax.margins(0.08)  # room for the thumbnails of the outermost points
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_neighbors(query_images: torch.Tensor, images: torch.Tensor,
                   neighbors: torch.return_types.topk | tuple[torch.Tensor, torch.Tensor], *, size: float = 1.4,
                   fig: FigureLike | None = None, title: str | None = None) -> FigureLike:
    """Each query (first column) and its nearest neighbours in feature space, with their distances.

    Args:
        query_images: ``(Q, 3, H, W)`` normalized query images.
        images: ``(N, 3, H, W)`` normalized images of the searched set.
        neighbors: what :func:`helpers.nearest_neighbors` returns, ``(values, indices)``: distances ``(Q, k)``
            float and indices into ``images`` ``(Q, k)`` long.
        size: inches per image.
        fig: draw into this Figure or SubFigure (cleared) instead of a new one.

    Returns:
        The figure drawn into.
    """
    if isinstance(neighbors, torch.Tensor) or len(neighbors) != 2:
        raise TypeError("neighbors is the pair (values, indices) that helpers.nearest_neighbors returns: "
                        "plot_neighbors(query_images, images, nearest_neighbors(features, queries))")
    distances, indices = neighbors
    if indices.is_floating_point() and not distances.is_floating_point():  # swapped: (indices, distances)
        raise ValueError("neighbors must be (values, indices) in torch.topk order, as nearest_neighbors returns "
                         "them; got (indices, distances)")
    q, k = indices.shape
    fig = _figure(fig, (size * (k + 1), size * q * 1.2 + 0.4))
    axes = fig.subplots(q, k + 1, squeeze=False)
    for r in range(q):
        show_image(query_images[r], axes[r][0], title="query")
        for c in range(k):
            i = int(indices[r, c])
            show_image(images[i], axes[r][c + 1], title=f"#{i}  d={float(distances[r, c]):.3g}")
            axes[r][c + 1].title.set_fontsize(7)
    fig.suptitle(title or "nearest neighbours (Euclidean distance in feature space)", fontsize=10)
    return fig


def plot_gradient_image(grad: torch.Tensor, ax: Axes | None = None, *, title: str | None = None) -> Axes:
    """An input gradient ``(3, H, W)`` (or ``(1, 3, H, W)``), e.g. from :func:`helpers.guided_backprop`, as RGB:
    ``0.5 + g / (2 max|g|)``, so grey is zero and the sign shows as colour; the scale is in the title."""
    ax = _axes(ax)
    g = torch.as_tensor(grad).detach().float().cpu()
    g = g[0] if g.dim() == 4 and g.shape[0] == 1 else g
    if g.dim() != 3 or g.shape[0] != 3:
        raise ValueError(f"expected a gradient image (3, H, W), got shape {tuple(g.shape)}")
    peak = float(g.abs().max())
    ax.imshow(to_image(0.5 + g / (2 * peak) if peak > 0 else torch.full_like(g, 0.5), normalized=False))
    ax.set_axis_off()
    ax.set_title(f"{title + ' ' if title else ''}(grey = 0, ±{peak:.2g} at the ends)", fontsize=9)
    return ax


def plot_fooling(result, index: int = 0, *, classes: list[str] | None = None, fig: FigureLike | None = None,
                 size: float = 2.6) -> FigureLike:
    """Original, adversarial image, their difference magnified, and the target's confidence per step.

    Args:
        result: a :class:`helpers.FoolingResult`.
        index: which image of the batch.
        classes: class names for the titles (default: indices).
        fig: draw into this Figure or SubFigure (cleared) instead of a new one.

    Returns:
        The figure drawn into.
    """
    fig = _figure(fig, (4 * size, size + 0.4))
    axes = fig.subplots(1, 4)
    t = int(result.target[index])
    name = classes[t] if classes else str(t)
    conf = result.confidence[:, index].detach().float().cpu()
    one = result.image.dim() == 3  # the result of one (3, H, W) image
    show_image(result.original if one else result.original[index], axes[0],
               title=f"original, p({name}) = {float(conf[0]):.2f}")
    show_image(result.image if one else result.image[index], axes[1],
               title=f"adversarial, p({name}) = {float(conf[-1]):.2f}")
    delta = (result.perturbation if one else result.perturbation[index]).detach().float().cpu()
    linf = float(delta.abs().max())
    factor = 0.5 / linf if linf > 0 else 1.0
    axes[2].imshow(to_image(0.5 + factor * delta, normalized=False))
    axes[2].set_axis_off()
    axes[2].set_title(f"difference x{factor:.0f} (Linf {linf * 255:.1f}/255)")
    axes[3].plot(conf.numpy())
    axes[3].set_xlabel("step")
    axes[3].set_ylabel(f"p({name})")
    axes[3].set_title(f"{int(result.steps[index])} steps, L2 {float(result.l2[index]):.3g}")
    for ax in axes[:3]:
        ax.title.set_fontsize(8)
    return fig
