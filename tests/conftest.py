"""Shared fixtures: tiny models, a clean environment, and no network."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest
import torch
from torch import nn

# The tests use tiny models: one thread is as fast as two, and it does not slow to a crawl when the two
# cores are busy with something else (OpenMP threads of tiny ops oversubscribe badly). CNNVIS_TEST_THREADS=2 runs
# them with two threads (other work splits, other rounding), as a check that no comparison depends on it.
torch.set_num_threads(int(os.environ.get("CNNVIS_TEST_THREADS", "1")))


def pytest_addoption(parser):
    parser.addoption(
        "--fp-noise", action="store_true",
        help="perturb every Conv2d and Linear output by a few fp32 rounding steps, in a pattern that depends on the "
             "batch size and shape (how another CPU's kernels, or another batch size, round): a comparison of two "
             "numerical paths must still pass; a comparison of one path with itself stays bit-exact")


# Relative size of the --fp-noise perturbation: 4 units in the last place of fp32 (2**-23 each), of the order of the
# differences measured between oneDNN's AVX2, AVX-512 and AMX kernels for the convolutions these tests run.
FP_NOISE = 2.0 ** -21


def _fp_noise_patterns():
    """Patch Conv2d and Linear to add the --fp-noise perturbation; returns the function that undoes it."""
    patterns: dict[tuple, torch.Tensor] = {}
    conv_forward, linear_forward = nn.Conv2d._conv_forward, nn.Linear.forward

    def perturb(out: torch.Tensor) -> torch.Tensor:
        if not out.is_floating_point() or out.device.type == "meta":
            return out
        key = (tuple(out.shape), out.dtype, out.device)
        if key not in patterns:  # the same shape always gets the same pattern: one path stays bit-exact
            gen = torch.Generator().manual_seed(hash(tuple(out.shape)) % 2**31)
            patterns[key] = torch.randint(-1, 2, out.shape, generator=gen).to(out.dtype).to(out.device)
        scale = (out.abs() + out.abs().mean()).detach()
        return out + FP_NOISE * patterns[key] * scale

    nn.Conv2d._conv_forward = lambda self, x, w, b: perturb(conv_forward(self, x, w, b))
    nn.Linear.forward = lambda self, x: perturb(linear_forward(self, x))

    def undo() -> None:
        nn.Conv2d._conv_forward, nn.Linear.forward = conv_forward, linear_forward
    return undo


def pytest_configure(config):
    if config.getoption("--fp-noise", default=False):
        config._fp_noise_undo = _fp_noise_patterns()


def pytest_unconfigure(config):
    undo = getattr(config, "_fp_noise_undo", None)
    if undo is not None:
        undo()


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


def assert_same_numbers(actual: torch.Tensor, expected: torch.Tensor, *, rel: float = 1e-4) -> None:
    """Two numerical paths (another batch size, another order of operations) agree up to fp32 rounding: every
    element within ``rel`` times the largest magnitude in ``expected``. The rounding error of a sum (a convolution,
    a backward pass) scales with the size of the terms it adds, not with the element it ends in, so an element
    near zero is judged on the scale of the whole tensor."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=rel * scale)


def assert_mostly_close(actual: torch.Tensor, expected: torch.Tensor, *, tight: float, share: float,
                        loose: float) -> None:
    """Two gradient ascents of the same objective by two numerical paths agree but for a few pixels: all but
    ``share`` of the elements within ``tight``, every element within ``loose``. Adam's first steps are
    lr * g / (|g| + 1e-8): where a pixel's gradient is within rounding of zero, the step's size is set by the
    rounding, so a few pixels may part by a fraction of a step; a wrong objective moves most pixels."""
    diff = (actual - expected).abs()
    far = (diff > tight).float().mean().item()
    assert far <= share, f"{far:.1%} of the elements differ by more than {tight:g} (allowed {share:.0%})"
    assert diff.max().item() <= loose, f"an element differs by {diff.max().item():.3g} (allowed {loose:g})"


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
