"""Technique 10 of the gallery: late-layer features, t-SNE map with thumbnails, nearest neighbours."""

import pytest
import torch
import torchvision
from conftest import assert_same_state, model_state
from matplotlib.offsetbox import AnnotationBbox

from helpers import extract_features, nearest_neighbors, plot_embedding, plot_neighbors, tsne_embedding


def test_an_image_of_the_set_is_its_own_nearest_neighbour_at_distance_zero():
    # 40 vectors far from the origin: the fast |a|^2 + |b|^2 - 2ab formula would not give exactly 0 here
    feats = torch.randn(40, 8, generator=torch.Generator().manual_seed(0)) * 10 + 1000
    dist, idx = nearest_neighbors(feats, [3, 37, 0], k=5)
    assert idx.shape == dist.shape == (3, 5)
    assert idx[:, 0].tolist() == [3, 37, 0] and (dist[:, 0] == 0).all()
    assert (dist[:, 1:] >= dist[:, :-1]).all() and (dist[:, 1:] > 0).all()
    full = (feats[[3, 37, 0], None] - feats[None]).norm(dim=-1)  # brute force
    assert torch.equal(idx, full.argsort(dim=1, stable=True)[:, :5])
    assert torch.allclose(dist, full.sort(dim=1).values[:, :5])
    other_dist, other = nearest_neighbors(feats, [3, 37, 0], k=4, exclude_self=True)
    assert torch.equal(other, idx[:, 1:]) and torch.allclose(other_dist, dist[:, 1:])


def test_query_vectors_find_the_closest_image():
    feats = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    dist, idx = nearest_neighbors(feats, feats[6] + 1e-3, k=2)
    assert idx[0, 0] == 6 and torch.isclose(dist[0, 0], torch.tensor(2e-3), atol=1e-6)


def test_neighbour_errors():
    feats = torch.randn(5, 3)
    with pytest.raises(ValueError, match="between 0 and 4"):
        nearest_neighbors(feats, [5])
    with pytest.raises(ValueError, match="k must be between 1 and 4"):
        nearest_neighbors(feats, [0], k=5, exclude_self=True)
    with pytest.raises(ValueError, match=r"\(Q, 3\)"):
        nearest_neighbors(feats, torch.randn(2, 4))


def blobs(n=15, d=64, seed=0):
    """Two tight clusters far apart in d dimensions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, d, generator=g) * 10
    return torch.cat([centres[0] + torch.randn(n, d, generator=g), centres[1] + torch.randn(n, d, generator=g)])


def test_tsne_shape_determinism_and_that_it_keeps_clusters_apart():
    feats = blobs()
    a = tsne_embedding(feats, pca_dim=10, seed=0)
    assert a.shape == (30, 2) and a.dtype == torch.float32
    assert torch.equal(a, tsne_embedding(feats, pca_dim=10, seed=0))
    # every point's nearest 2-D neighbour is from its own cluster
    _, idx = nearest_neighbors(a, list(range(30)), k=1, exclude_self=True)
    assert ((idx[:, 0] < 15) == (torch.arange(30) < 15)).all()
    with pytest.raises(ValueError, match="at least 4"):
        tsne_embedding(feats[:3])


def test_features_are_the_flattened_layer_output_in_order_and_batched(tiny_cnn):
    images = torch.randn(7, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    tiny_cnn.train()
    before = model_state(tiny_cnn)
    dataset = [(img, i % 2) for i, img in enumerate(images)]  # a dataset of (image, label) pairs
    feats = extract_features(tiny_cnn, dataset, "classifier.1", batch_size=3)
    assert_same_state(before, model_state(tiny_cnn))
    with torch.no_grad():
        expected = tiny_cnn.classifier[:2](tiny_cnn.features(images.clone()))
    assert feats.shape == (7, 16) and torch.allclose(feats, expected, atol=1e-6)
    maps = extract_features(tiny_cnn, images, "features.4", batch_size=4)  # a map is flattened too
    assert maps.shape == (7, 8 * 5 * 5)
    assert nearest_neighbors(feats, [4], k=1).indices.item() == 4


def test_resnet18_avgpool_features():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    images = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    feats = extract_features(model, images, "avgpool", batch_size=2)
    with torch.no_grad():
        logits = model.fc(feats)
        expected = model(images)
    assert feats.shape == (5, 512) and torch.allclose(logits, expected, atol=1e-4)


def test_plots_put_a_thumbnail_at_every_point_and_a_row_per_query():
    images = torch.randn(6, 3, 16, 16)
    coords = torch.randn(6, 2)
    ax = plot_embedding(coords, images, labels=["a", "b"] * 3, thumb_px=8)
    thumbs = [a for a in ax.artists if isinstance(a, AnnotationBbox)]
    assert len(thumbs) == 6 and tuple(thumbs[2].xy) == tuple(coords[2].tolist())
    assert thumbs[0].offsetbox.get_data().shape == (8, 8, 3)
    neighbors = nearest_neighbors(torch.randn(6, 4), [0, 1], k=3)
    fig = plot_neighbors(images[:2], images, neighbors)
    assert len(fig.axes) == 2 * 4 and fig.axes[0].get_title() == "query"
    d, i = float(neighbors.values[0, 0]), int(neighbors.indices[0, 0])
    assert fig.axes[1].get_title() == f"#{i}  d={d:.3g}"
    with pytest.raises(TypeError):  # the old call with (indices, distances) as two arguments does not run
        plot_neighbors(images[:2], images, neighbors.indices, neighbors.values)
    with pytest.raises(ValueError, match="torch.topk order"):  # nor the pair in the old order
        plot_neighbors(images[:2], images, (neighbors.indices, neighbors.values))


def test_neighbors_come_in_topk_order_values_then_indices():
    feats = torch.tensor([[0.0], [3.0], [1.0]])
    res = nearest_neighbors(feats, torch.tensor([0]), k=2)  # an integer tensor of query indices
    assert torch.equal(res.values, torch.tensor([[0.0, 1.0]])) and torch.equal(res.indices, torch.tensor([[0, 2]]))
    values, indices = res
    assert values is res.values and indices is res.indices
    assert nearest_neighbors(feats, 2, k=1).indices.tolist() == [[2]]  # one int query
    with pytest.raises(ValueError, match=r"a query must be .* got \[0.5\]"):
        nearest_neighbors(feats, [0.5], k=1)
