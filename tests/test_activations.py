import pytest
import torch
import torch.nn.functional as F

from helpers import activation_pca, explained_variance_ratio, mean_over_channels, upsample_map


def rank_one(v, seed=0):
    """Activations v[c] * p[n, h, w]: every channel is the same spatial pattern, scaled."""
    p = torch.rand(2, 5, 7, generator=torch.Generator().manual_seed(seed))
    return torch.tensor(v)[None, :, None, None] * p[:, None], p


@pytest.mark.parametrize("v, sign", [([0.5, 2.0, -1.0, 0.25], 1.0), ([0.5, -2.0, 1.0, 0.25], -1.0)])
def test_pca_of_rank_one_activation_recovers_the_pattern_with_a_fixed_sign(v, sign):
    act, p = rank_one(v)
    pc = activation_pca(act, k=1)
    assert pc.shape == (2, 1, 5, 7)
    expected = sign * torch.tensor(v).norm() * (p - p.mean())  # centred over all images and positions
    assert torch.allclose(pc[:, 0], expected, atol=1e-5)
    ratio = explained_variance_ratio(act)
    assert torch.isclose(ratio[0], torch.tensor(1.0, dtype=ratio.dtype)) and ratio[1:].abs().max() < 1e-10


def test_pca_sign_is_a_function_of_the_data():
    act = torch.randn(2, 6, 4, 4, generator=torch.Generator().manual_seed(1))
    pc = activation_pca(act, k=3)
    assert torch.equal(pc, activation_pca(act.clone(), k=3))
    assert torch.allclose(activation_pca(-act, k=3), -pc, atol=1e-5)


def test_pca_matches_torch_pca_lowrank_up_to_sign_and_orders_by_variance():
    g = torch.Generator().manual_seed(2)
    mixing = torch.randn(8, 8, generator=g) * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1])
    act = (torch.randn(3, 6, 6, 8, generator=g) @ mixing.T).permute(0, 3, 1, 2).double()
    pc = activation_pca(act, k=3)
    rows = act.permute(0, 2, 3, 1).reshape(-1, 8)
    torch.manual_seed(0)
    _, _, v = torch.pca_lowrank(rows, q=8, center=True, niter=8)
    theirs = (rows - rows.mean(0)) @ v[:, :3]
    ours = pc.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.allclose(ours.abs(), theirs.abs(), atol=1e-6)
    var = ours.var(0)
    assert var[0] > var[1] > var[2]
    cov = torch.cov(ours.T)
    assert torch.allclose(cov - torch.diag(cov.diag()), torch.zeros(3, 3, dtype=cov.dtype), atol=1e-8)
    assert pc.dtype == torch.float64


def test_pca_arguments():
    act = torch.randn(1, 4, 3, 3)
    with pytest.raises(ValueError, match="between 1 and"):
        activation_pca(act, k=5)
    with pytest.raises(ValueError, match="between 1 and"):
        activation_pca(act, k=0)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        activation_pca(act[0])


def test_mean_over_channels_by_hand():
    act = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    m = mean_over_channels(act)
    assert m.shape == (2, 2, 2)
    assert torch.equal(m[0], (act[0, 0] + act[0, 1] + act[0, 2]) / 3)


def test_upsample_bilinear_by_hand():
    m = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    up = upsample_map(m, 4)
    assert up.shape == (1, 4, 4)
    # align_corners=False: output pixel centres sit at -0.25, 0.25, 0.75, 1.25 of the 2x2 grid (edges clamp)
    assert torch.allclose(up[0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    assert torch.allclose(up[0, :, 0], torch.tensor([0.0, 0.5, 1.5, 2.0]))


def test_upsample_matches_interpolate_and_keeps_constants():
    maps = torch.rand(2, 7, 7)
    up = upsample_map(maps, (224, 200))
    assert up.shape == (2, 224, 200)
    assert torch.equal(up, F.interpolate(maps[:, None], (224, 200), mode="bilinear", align_corners=False)[:, 0])
    assert torch.allclose(upsample_map(torch.full((1, 3, 3), 2.5), 10), torch.full((1, 10, 10), 2.5))
    assert upsample_map(torch.rand(2, 3, 7, 7), 14).shape == (2, 3, 14, 14)
    with pytest.raises(ValueError):
        upsample_map(torch.rand(7, 7), 14)
