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


def test_batched_crop_flip_is_a_padded_shift_plus_flip_per_image():
    from helpers.data import random_crop_flip

    torch.manual_seed(0)
    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets, flips = set(), 0
    for i in range(len(x)):
        found = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                 if torch.equal(out[i], (padded[i].flip(-1) if f else padded[i])[:, dy:dy + 8, dx:dx + 8])]
        assert found, i
        offsets.add(found[0][:2])
        flips += found[0][2]
    assert len(offsets) > 15 and 16 < flips < 48  # independent per image, not one draw for the batch


def test_tensor_loader_matches_the_dataloader_pipeline(tmp_path, no_network, monkeypatch):
    monkeypatch.setenv("CNNVIS_OFFLINE", "1")
    with pytest.warns(OfflineStandInWarning):
        slow_train, slow_test = cifar10_loaders(tmp_path, normalize=True, subset=64, test_subset=40,
                                                test_batch_size=16)
        fast_train, fast_test = cifar10_loaders(tmp_path, normalize=True, subset=64, test_subset=40,
                                                test_batch_size=16, fast=True)
    assert len(fast_test) == len(slow_test) == 3 and len(fast_train) == 4
    for (xs, ys), (xf, yf) in zip(slow_test, fast_test, strict=True):  # unshuffled: the very same batches
        assert torch.equal(ys, yf.cpu()) and torch.allclose(xs, xf.cpu(), atol=1e-6)
    # shuffled: every image keeps its own label, and every image comes once per epoch
    images, labels = (torch.cat(parts) for parts in zip(*slow_train, strict=True))
    def key(x):  # the two pipelines round the normalization differently in the last bit
        return tuple(torch.round(x.flatten() * 1e4).int().tolist())

    label_of = {key(x): int(y) for x, y in zip(images, labels, strict=True)}
    seen = [label_of[key(x)] == int(y)
            for xb, yb in fast_train for x, y in zip(xb.cpu(), yb, strict=True)]
    assert len(seen) == 64 and all(seen)
    assert fast_train.dataset.is_synthetic and fast_train.dataset.classes == list(SYNTHETIC_CLASSES)


def test_single_object_images_are_unchanged_and_come_with_their_masks():
    import hashlib

    from helpers import synthetic_cifar10_images, synthetic_images_with_masks

    images, labels = synthetic_cifar10_images(500, 0)
    # the bytes written before masks existed (sheet 4 reads files made from them): they must never change
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    assert digest == "41d2dbd4e34a7f90c428782c957a2c8ab9f4165c8b82d322c1e84137d3758962"
    same, same_labels, masks = synthetic_images_with_masks(500, 0)
    assert np.array_equal(same, images) and np.array_equal(same_labels, labels)
    assert masks.shape == (500, 32, 32) and masks.dtype == bool and masks.any(axis=(1, 2)).all()
    # the object is painted in one colour (+ noise) on a gradient background: inside the mask the pixels
    # vary much less than across the image
    spread_in = np.mean([images[i][masks[i]].std(0).mean() for i in range(100)])
    spread_all = np.mean([images[i].reshape(-1, 3).std(0).mean() for i in range(100)])
    assert spread_in < 0.6 * spread_all


def test_two_object_images_hold_two_different_classes_apart():
    from helpers import synthetic_two_object_images

    images, labels, masks = synthetic_two_object_images(200, 1)
    assert images.shape == (200, 32, 48, 3) and labels.shape == (200, 2) and masks.shape == (200, 2, 32, 48)
    assert (labels[:, 0] != labels[:, 1]).all() and set(labels.ravel()) == set(range(10))
    assert not (masks[:, 0] & masks[:, 1]).any()  # never overlapping
    assert masks.any(axis=(2, 3)).all()
    cols = np.arange(48)
    left = (masks[:, 0].any(1) * cols).max(1)
    right = np.where(masks[:, 1].any(1), cols, 99).min(1)
    assert (left < right).all()  # object 0 on the left, object 1 on the right
    again = synthetic_two_object_images(200, 1)
    assert all(np.array_equal(a, b) for a, b in zip(again, (images, labels, masks), strict=True))
    with pytest.raises(ValueError, match="at least 48"):
        synthetic_two_object_images(2, 0, width=40)


# ---------------------------------------------------------------- broken files (issue 24)

def _real_looking(root: Path) -> Path:
    """A folder in the real CIFAR-10 layout without the synthetic marker: the user's own (here: wrong) files."""
    folder = write_synthetic_cifar10(root, n_train=10, n_test=5, seed=1)
    (folder / "SYNTHETIC.txt").unlink()
    return folder


@pytest.mark.parametrize("offline", [True, False])
def test_damaged_real_data_is_reported_by_file_and_check_never_replaced_by_the_stand_in(tmp_path, no_network,
                                                                                        monkeypatch, offline):
    folder = _real_looking(tmp_path)
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])  # truncated
    (folder / "test_batch").unlink()
    if offline:
        monkeypatch.setenv("CNNVIS_OFFLINE", "1")
    with pytest.raises(DataUnavailableError) as info:
        cifar10_dataset(tmp_path, train=True)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"CIFAR-10 in {tmp_path} is damaged")
    assert f"{batch} fails torchvision's md5 check (100 bytes)" in message
    assert f"{folder / 'test_batch'} is missing" in message
    assert "Delete the damaged file(s) and download" in message and CIFAR10.url in message
    assert not (tmp_path / "cifar10-synthetic").exists()  # no 37 MB stand-in beside the user's data


def test_a_truncated_stand_in_file_is_named_with_the_fix(tmp_path, no_network, monkeypatch):
    write_synthetic_cifar10(tmp_path / "cifar10-synthetic", n_train=10, n_test=5)
    batch = tmp_path / "cifar10-synthetic" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:200])
    monkeypatch.setenv("CNNVIS_OFFLINE", "1")
    with (pytest.warns(OfflineStandInWarning),
          pytest.raises(DataUnavailableError, match=f"stand-in file {batch} is unreadable .*delete the folder")):
        cifar10_dataset(tmp_path, train=True)
    with pytest.warns(OfflineStandInWarning):
        assert len(cifar10_dataset(tmp_path, train=False)) == 5  # the test split's files are fine
