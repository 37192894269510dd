import warnings

import pytest
import torch

import helpers
from helpers import LeNet, OfflineStandInWarning, WeightsUnavailableError, count_parameters, pretrained_model


def test_lenet_matches_the_sheet():
    model = LeNet()
    assert count_parameters(model) == 62_006
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (6, (5, 5), (1, 1), (0, 0)), (16, (5, 5), (1, 1), (0, 0))]
    linears = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == [120, 84, 10]


def test_missing_weights_offline_raise_with_the_exact_path(torch_home, no_network):
    with pytest.raises(WeightsUnavailableError) as info:
        pretrained_model("resnet18", device="cpu")
    message = str(info.value)
    expected = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "CNNVIS_OFFLINE=1" in message


def test_opt_in_gives_random_weights_with_a_loud_warning(torch_home, no_network, monkeypatch):
    monkeypatch.setenv("CNNVIS_OFFLINE", "1")
    rng_before = torch.random.get_rng_state()
    with pytest.warns(OfflineStandInWarning, match="RANDOM weights"):
        model = pretrained_model("resnet18", device="cpu")
    assert torch.equal(rng_before, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert not model.is_pretrained and not model.training
    assert len(model.categories) == 1000 and model.categories[243] == "bull mastiff"
    with pytest.warns(OfflineStandInWarning):
        again = pretrained_model("resnet18", device="cpu")
    assert torch.equal(model.fc.weight, again.fc.weight)  # seeded: the stand-in is reproducible


def test_cached_weights_are_used_whatever_the_variable_says(torch_home, no_network, monkeypatch):
    from torchvision.models import ResNet18_Weights, resnet18

    torch.manual_seed(123)
    reference = resnet18()
    path = helpers.weights_path(ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    monkeypatch.setenv("CNNVIS_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", OfflineStandInWarning)
        model = pretrained_model("resnet18", device="cpu")
    assert model.is_pretrained
    assert torch.equal(model.conv1.weight, reference.conv1.weight)


def test_corrupt_cached_file_says_delete_it(torch_home, no_network):
    from torchvision.models import ResNet18_Weights

    path = helpers.weights_path(ResNet18_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a download")
    with pytest.raises(WeightsUnavailableError, match="delete it"):
        pretrained_model("resnet18", device="cpu")


def test_random_weights_on_request_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = pretrained_model("vgg16", pretrained=False, device="cpu")
    assert not model.is_pretrained and not model.training
    assert count_parameters(model) == 138_357_544


def test_unknown_model():
    with pytest.raises(ValueError, match="vgg16, resnet18"):
        pretrained_model("alexnet")
