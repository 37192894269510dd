"""Shared fixtures: tiny models, a clean environment, and no network."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import torch
from torch import nn

# The tests use tiny models: one thread is as fast as two, and it does not slow to a crawl when the two
# cores are busy with something else (OpenMP threads of tiny ops oversubscribe badly).
torch.set_num_threads(1)


def pytest_collectstart(collector):
    # Executed notebooks write the kernel's temporary cell-file paths to stderr; they change every run.
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr",)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Every test starts with the project's switches unset and progress bars off."""
    for name in ("CNNVIS_QUICK", "CNNVIS_OFFLINE", "TQDM_DISABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CNNVIS_PROGRESS", "0")


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test opened."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def no_network(monkeypatch):
    """Make every download fail at once, as on a machine without internet (and never download 500 MB)."""
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled by the test")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "urlopen", refuse)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty $TORCH_HOME: no cached weights."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


class TinyCNN(nn.Module):
    """A small VGG-like network with in-place ReLUs (like torchvision's)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))

    def forward(self, x):
        return self.classifier(self.features(x))


class TwoBranches(nn.Module):
    """A wide first convolution (kernel 65: an image needs at least 65 px) and a forward pass with Python control
    flow on the input's size, which torch.fx cannot trace (so no receptive-field geometry, like Inception)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, kernel_size=65)
        self.relu = nn.ReLU()

    def forward(self, x):
        if x.shape[-1] > 1000:  # data-dependent control flow: torch.fx cannot trace this
            x = x[..., ::2, ::2]
        return self.relu(self.conv(x))


@pytest.fixture
def tiny_cnn():
    torch.manual_seed(0)
    return TinyCNN().eval()


def awkward_copy(resnet: nn.Module) -> nn.Module:
    """A copy of a ResNet in the state a helper must not disturb: train mode (BatchNorm would update its
    running stats) with one BatchNorm in eval (mixed modes), a stale ``.grad`` and one frozen parameter."""
    import copy

    model = copy.deepcopy(resnet).train()
    model.layer1[0].bn1.eval()
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    model.conv1.weight.requires_grad_(False)
    return model


def model_state(model: nn.Module) -> dict:
    """Everything a helper must leave as found: weights, grads, requires_grad, modes, flags, hooks."""
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "layout": {k: (p.data_ptr(), p.stride()) for k, p in model.named_parameters()},  # the same tensors
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "inplace": {k: getattr(m, "inplace", None) for k, m in model.named_modules()},
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                     for m in model.modules()),
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["requires_grad"] == after["requires_grad"]
    assert before["training"] == after["training"]
    assert before["inplace"] == after["inplace"]
    assert before["hooks"] == after["hooks"]
    assert before["layout"] == after["layout"]
    for k, v in before["params"].items():
        assert torch.equal(v, after["params"][k]), k
    for k, g in before["grads"].items():
        h = after["grads"][k]
        assert (g is None and h is None) or torch.equal(g, h), k
