"""Images as feature vectors of a late layer: a 2-D map of the set (PCA, then t-SNE) and nearest neighbours.

Course notes 1.8-1.9; van der Maaten & Hinton 2008, "Visualizing Data using t-SNE",
https://jmlr.org/papers/v9/vandermaaten08a.html; Krizhevsky et al. 2012 (nearest neighbours in the last
hidden layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._checks import indices, positive_int
from ..config import progress
from ..hooks import TruncatedForward, frozen_eval, model_device
from ..images import ImageCollection, LazyImages


def extract_features(model: nn.Module, images: ImageCollection, layer: str, *, size: int | None = 224,
                     batch_size: int = 16, show_progress: bool | None = None) -> torch.Tensor:
    """One feature vector per image: the flattened output of ``layer`` (e.g. VGG16 ``"classifier.4"``, the
    second 4096-d FC layer after its ReLU, or ResNet-18 ``"avgpool"``, 512-d).

    Batched, without gradients, only up to ``layer``, in eval mode; the model is left as found.

    Args:
        model: a CNN taking ImageNet-normalized images.
        images: a folder of image files, an ``(N, 3, H, W)`` tensor, a list of tensors or a dataset
            (see :func:`helpers.load_images`).
        layer: dotted module name.
        size: side of the images loaded from a folder.
        batch_size: images per forward pass.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        Tensor ``(N, D)`` float32 on the images' device (a tensor's, the first listed tensor's; the CPU for a
        folder), in the order of the images.
    """
    source = LazyImages(images, size)
    device = model_device(model)
    feats = []
    n_batches = -(-len(source) // positive_int(batch_size, "batch_size"))
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        for _, batch in progress(source.batches(batch_size), total=n_batches, desc=f"features {layer}",
                                 enabled=show_progress):
            feats.append(forward(batch.to(device))[layer].float().flatten(1).clone())
    if len({f.shape[1] for f in feats}) > 1:
        raise ValueError(f"the images give features of different lengths at {layer!r} (they differ in size); "
                         "load them with one `size` or use a layer after global pooling")
    return torch.cat(feats).to(source.device)


def tsne_embedding(features: torch.Tensor, *, pca_dim: int = 50, perplexity: float = 30.0,
                   seed: int = 0) -> torch.Tensor:
    """2-D coordinates of feature vectors: PCA to ``pca_dim`` (removes noise, speeds up), then t-SNE.

    Uses ``sklearn.decomposition.PCA`` (exact SVD) and ``sklearn.manifold.TSNE`` (PCA initialisation,
    ``random_state=seed``), so the result is a deterministic function of ``features`` and ``seed``.
    The perplexity is lowered to ``(N - 1) / 3`` for small sets (t-SNE needs ``perplexity < N``).

    Args:
        features: ``(N, D)`` with ``N >= 4``.
        pca_dim: dimensions kept by the PCA (capped at ``min(N, D)``; 0 skips the PCA).
        perplexity: t-SNE's effective number of neighbours.
        seed: random state of t-SNE.

    Returns:
        Tensor ``(N, 2)`` float32 on the device of ``features``.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if features.dim() != 2:
        raise ValueError(f"features must be (N, D), got {tuple(features.shape)}; flatten them with .flatten(1)")
    n, d = features.shape
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 feature vectors, got {n}")
    x = features.detach().double().cpu().numpy()
    dim = min(pca_dim, n, d)
    if dim > 0 and dim < d:
        x = PCA(n_components=dim, svd_solver="full").fit_transform(x)
    tsne = TSNE(n_components=2, perplexity=min(float(perplexity), (n - 1) / 3), init="pca", random_state=seed)
    coords = tsne.fit_transform(np.ascontiguousarray(x))
    return torch.from_numpy(coords.astype(np.float32)).to(features.device)


def nearest_neighbors(features: torch.Tensor, queries: torch.Tensor | Sequence[int], k: int = 5, *,
                      exclude_self: bool = False) -> torch.return_types.topk:
    """The ``k`` nearest feature vectors (Euclidean) of each query, nearest first (course notes 1.9).

    Distances are computed exactly (no ``|a|^2 + |b|^2 - 2ab`` shortcut), so an image of the set is its
    own nearest neighbour at distance exactly 0.

    Args:
        features: ``(N, D)`` the set searched, e.g. from :func:`extract_features`.
        queries: ``(Q, D)`` query vectors, or indices into ``features`` (an int, a list, an integer tensor).
        k: neighbours per query.
        exclude_self: with index queries, skip the query itself.

    Returns:
        ``(values, indices)`` in ``torch.topk``'s order and names: the distances ``(Q, k)`` float and the
        neighbours' indices into ``features`` ``(Q, k)`` long, on the device of ``features``, nearest first;
        ties are broken by the lower index (``dist, idx = nearest_neighbors(...)``).
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (N, D), got {tuple(features.shape)}")
    n = features.shape[0]
    feats = features.detach().float()
    by_index = not (isinstance(queries, torch.Tensor) and queries.is_floating_point())
    if by_index:
        idx = torch.tensor(indices(queries, "a query"), dtype=torch.long, device=feats.device)
        if idx.min() < 0 or idx.max() >= n:
            raise ValueError(f"query indices must be between 0 and {n - 1}, got {idx.tolist()}")
        q = feats[idx]
    else:
        if exclude_self:
            raise ValueError("exclude_self needs the queries as indices into features, not vectors")
        q = queries.detach().float().to(feats.device)
        q = q.unsqueeze(0) if q.dim() == 1 else q
        if q.dim() != 2 or q.shape[1] != feats.shape[1]:
            raise ValueError(f"query vectors must be (Q, {feats.shape[1]}), got {tuple(queries.shape)}")
    available = n - 1 if exclude_self else n
    if not 1 <= positive_int(k, "k") <= available:
        raise ValueError(f"k must be between 1 and {available} (the candidates per query), got {k!r}")
    dist = torch.cdist(q, feats, compute_mode="donot_use_mm_for_euclid_dist")  # (Q, N)
    if exclude_self:
        dist[torch.arange(len(q), device=feats.device), idx] = float("inf")
    order = torch.sort(dist, dim=1, stable=True)
    return torch.return_types.topk((order.values[:, :k], order.indices[:, :k]))
