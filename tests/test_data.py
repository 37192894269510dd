from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import CIFAR10

from helpers import (
    SYNTHETIC_CLASSES,
    DataUnavailableError,
    LeNet,
    OfflineStandInWarning,
    SyntheticCIFAR10,
    cifar10_dataset,
    cifar10_loaders,
    cifar10_transform,
    fit,
    write_synthetic_cifar10,
)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_cifar10(root, n_train=6000, n_test=1000, seed=0)
    return root


def test_written_in_cifar_on_disk_format(synthetic_root):
    folder = synthetic_root / "cifar-10-batches-py"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["SYNTHETIC.txt", "batches.meta", "data_batch_1", "data_batch_2", "data_batch_3",
                     "data_batch_4", "data_batch_5", "test_batch"]
    train = SyntheticCIFAR10(synthetic_root, train=True)
    test = SyntheticCIFAR10(synthetic_root, train=False)
    assert train.data.shape == (6000, 32, 32, 3) and train.data.dtype == np.uint8
    assert len(test) == 1000 and train.classes == list(SYNTHETIC_CLASSES)
    assert sorted(set(train.targets)) == list(range(10))


def test_torchvision_refuses_it_as_the_real_cifar10(synthetic_root):
    with pytest.raises(RuntimeError, match="corrupted"):
        CIFAR10(synthetic_root, train=True, download=False)


def test_missing_offline_raises_how_to_place_files(tmp_path, no_network):
    with pytest.raises(DataUnavailableError) as info:
        cifar10_dataset(tmp_path, train=True)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path) in message and "CNNVIS_OFFLINE=1" in message
    assert not (tmp_path / "cifar10-synthetic").exists()


def test_opt_in_writes_and_reads_the_stand_in_with_a_warning(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("CNNVIS_OFFLINE", "1")
    with pytest.warns(OfflineStandInWarning, match="SYNTHETIC"):
        ds = cifar10_dataset(tmp_path, train=False, subset=50)
    assert ds.is_synthetic and len(ds) == 50
    assert (tmp_path / "cifar10-synthetic" / "cifar-10-batches-py" / "SYNTHETIC.txt").exists()
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert isinstance(y, int)


def test_fake_real_folder_is_not_used_as_real(tmp_path, no_network, monkeypatch):
    # A synthetic set placed where the real one belongs fails torchvision's checksums: the stand-in
    # folder is used instead, and says so.
    write_synthetic_cifar10(tmp_path, n_train=10, n_test=5, seed=1)
    monkeypatch.setenv("CNNVIS_OFFLINE", "1")
    with pytest.warns(OfflineStandInWarning):
        ds = cifar10_dataset(tmp_path, train=True)
    assert ds.is_synthetic and Path(ds.root) == tmp_path / "cifar10-synthetic"


def test_transforms_scale_and_normalize():
    img = np.full((32, 32, 3), 255, dtype=np.uint8)
    assert torch.equal(cifar10_transform()(img), torch.ones(3, 32, 32))
    assert torch.equal(cifar10_transform(normalize=True)(img), torch.ones(3, 32, 32))
    assert torch.equal(cifar10_transform(normalize=True)(np.zeros_like(img)), -torch.ones(3, 32, 32))


def test_augmentation_is_a_padded_shift_plus_optional_flip():
    rng = np.random.default_rng(0)
    img = rng.integers(1, 256, (32, 32, 3), dtype=np.uint8)
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    base = torch.from_numpy(padded).permute(2, 0, 1).float() / 255
    augment = cifar10_transform(augment=True)
    torch.manual_seed(0)
    flips = 0
    for _ in range(20):
        out = augment(img)
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.allclose(out, (base.flip(-1) if flip else base)[:, dy:dy + 32, dx:dx + 32], atol=1e-6)]
        assert matches, "augmented image is not a crop of the padded (possibly flipped) original"
        flips += matches[0][2]
    assert 0 < flips < 20


def test_lenet_learns_the_stand_in_far_above_chance(synthetic_root, monkeypatch):
    torch.manual_seed(0)
    train = SyntheticCIFAR10(synthetic_root, train=True, transform=cifar10_transform())
    test = SyntheticCIFAR10(synthetic_root, train=False, transform=cifar10_transform())
    history = fit(LeNet(), DataLoader(train, batch_size=16, shuffle=True), DataLoader(test, batch_size=500), 1)
    assert history.test_acc[0] > 0.25, history.test_acc  # chance is 0.10


def test_loaders_follow_the_sheet(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("CNNVIS_OFFLINE", "1")
    with pytest.warns(OfflineStandInWarning):
        train, test = cifar10_loaders(tmp_path, augment=True, normalize=True, subset=64, test_subset=32)
    x, y = next(iter(train))
    assert x.shape == (16, 3, 32, 32) and y.shape == (16,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < 0
    assert len(test.dataset) == 32
    first = [next(iter(train))[1] for _ in range(2)]
    assert not torch.equal(*first)  # shuffled every epoch
