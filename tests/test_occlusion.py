import copy
import importlib

import pytest
import torch
import torchvision
from conftest import assert_same_state, model_state
from torch import nn

from helpers import occlusion_map


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


class RegionMean(nn.Module):
    """Logits (mean of the red channel inside rows/cols 4:8, 0): only that region matters."""

    def forward(self, x):
        return torch.stack([x[:, 0, 4:8, 4:8].mean((1, 2)) * 4, torch.zeros(len(x))], 1)


def reference(model, x, target, patch, stride, fill):
    """Plain loop: one occluded copy at a time, probability drop averaged over the covering patches."""
    _, _, h, w = x.shape
    drops, counts = torch.zeros(h, w), torch.zeros(h, w)
    with torch.no_grad():
        base = model(x).softmax(1)[0, target]
        for top in range(0, h - patch + 1, stride):
            for left in range(0, w - patch + 1, stride):
                y = x.clone()
                y[:, :, top:top + patch, left:left + patch] = fill
                drops[top:top + patch, left:left + patch] += base - model(y).softmax(1)[0, target]
                counts[top:top + patch, left:left + patch] += 1
    return drops / counts


def test_known_by_construction():
    x = torch.ones(1, 3, 12, 12)
    drop = occlusion_map(RegionMean(), x, 0, patch=2, stride=2)[0]
    region = torch.zeros(12, 12, dtype=torch.bool)
    region[4:8, 4:8] = True
    # each 2x2 patch inside the region removes a quarter of the mean: p = sigmoid(4) -> sigmoid(3)
    expected = torch.sigmoid(torch.tensor(4.0)) - torch.sigmoid(torch.tensor(3.0))
    assert torch.allclose(drop[region], expected.expand(16))
    assert torch.equal(drop[~region], torch.zeros(128))
    # the target class that gains: the same map with the opposite sign
    assert torch.allclose(occlusion_map(RegionMean(), x, 1, patch=2, stride=2)[0], -drop)


def test_baseline_value_and_per_channel_baseline():
    x = torch.ones(1, 3, 12, 12)
    assert torch.equal(occlusion_map(RegionMean(), x, 0, patch=4, stride=4, baseline=1.0), torch.zeros(1, 12, 12))
    per_channel = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # only the red channel is read by the model
    assert torch.equal(occlusion_map(RegionMean(), x, 0, patch=4, stride=4, baseline=per_channel),
                       torch.zeros(1, 12, 12))
    assert torch.equal(occlusion_map(RegionMean(), x, 0, patch=4, stride=4, baseline=per_channel.flatten()),
                       torch.zeros(1, 12, 12))
    assert (occlusion_map(RegionMean(), x, 0, patch=4, stride=4, baseline=per_channel.flip(0)) > 0).any()


def test_matches_a_plain_loop_and_batching_does_not_matter(tiny_cnn):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 12, 12)
    expected = reference(tiny_cnn, x, 3, patch=4, stride=2, fill=0.0)
    p = tiny_cnn(x).softmax(1)[0, 3].item()
    for batch_size in (1, 7, 64):  # other batch sizes, other kernels: drops of p agree within 4e-5 of p
        got = occlusion_map(tiny_cnn, x, 3, patch=4, stride=2, batch_size=batch_size)
        torch.testing.assert_close(got[0], expected, rtol=0, atol=4e-5 * p)


def test_last_patch_is_flush_with_the_border():
    # 10 px, patch 4, stride 4: patches at 0, 4 and 6, so rows 8 and 9 are covered too.
    class LastRows(nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0, 8:, :].mean((1, 2)), torch.zeros(len(x))], 1)

    drop = occlusion_map(LastRows(), torch.ones(1, 3, 10, 10), 0, patch=4, stride=4)[0]
    assert (drop[8:] > 0).all() and torch.equal(drop[:6], torch.zeros(6, 10))


def test_matches_captum_occlusion_on_tiny_cnn_and_resnet18(tiny_cnn, resnet):
    attr = pytest.importorskip("captum.attr")
    torch.manual_seed(2)
    for model, x, targets, patch, stride in [(tiny_cnn, torch.randn(2, 3, 12, 12), [1, 4], 4, 2),
                                             (resnet, torch.randn(2, 3, 64, 64), [243, 285], 16, 16)]:
        def probabilities(z, model=model):
            return model(z).softmax(1)
        theirs = attr.Occlusion(probabilities).attribute(
            x, sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), baselines=0.0,
            target=targets, perturbations_per_eval=16)
        ours = occlusion_map(model, x, targets, patch=patch, stride=stride)
        assert ours.shape == (2, *x.shape[2:]) and ours.abs().sum() > 0
        # Drops of probabilities, computed in other batch sizes than captum's: a probability's rounding error is
        # relative to the probability (softmax of logits that are right to ~1e-6 of their scale), so the drops agree
        # within 4e-5 of the target probability (2e-6 and 4e-8 here); a wrong target changes them by ~1e-4.
        p = probabilities(x).gather(1, torch.tensor(targets)[:, None]).max().item()
        torch.testing.assert_close(ours, theirs[:, 0], rtol=0, atol=4e-5 * p)
        assert torch.equal(theirs[:, 0], theirs[:, 2])  # captum credits all channels alike


def test_leaves_model_and_input_as_found_also_on_errors(resnet):
    model = copy.deepcopy(resnet).train()  # BatchNorm would update its running stats in train mode
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    before = model_state(model)
    x = torch.randn(1, 3, 32, 32)
    x_before = x.clone()
    occlusion_map(model, x, 7, patch=16, stride=16)
    with pytest.raises(ValueError, match="out of range"):
        occlusion_map(model, x, 1000, patch=16, stride=16)
    assert_same_state(before, model_state(model))
    assert torch.equal(x, x_before)


def test_progress_bar_counts_the_batches(monkeypatch, tiny_cnn):
    module = importlib.import_module("helpers.toolbox.occlusion")

    totals = []

    def fake_progress(iterable=None, *, total=None, desc=None, leave=True, enabled=None):
        from tqdm import tqdm

        totals.append(total)
        return tqdm(iterable, total=total, disable=True)

    monkeypatch.setattr(module, "progress", fake_progress)
    occlusion_map(tiny_cnn, torch.randn(2, 3, 12, 12), 0, patch=4, stride=4, batch_size=4)  # 9 positions
    assert totals == [2 * 3]


@pytest.mark.parametrize("kwargs, match", [({"patch": 13}, "larger than the image"), ({"stride": 0}, "stride"),
                                           ({"patch": (2, 2, 2)}, "patch"), ({"batch_size": 0}, "batch_size"),
                                           ({"baseline": torch.zeros(2)}, "baseline")])
def test_bad_arguments(tiny_cnn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        occlusion_map(tiny_cnn, torch.randn(1, 3, 12, 12), 0, **({"patch": 4} | kwargs))
