import pytest
import torch
from conftest import assert_same_state, model_state

from helpers import (
    GapCNN,
    StandInSettings,
    default_cam_layer,
    synthesis_checks,
    trained_stand_in,
    two_object_split,
)

TINY = StandInSettings(n_train=256, n_test=64, epochs=1, width=4)


def test_trains_deterministically_caches_and_reloads(tmp_path):
    state = torch.random.get_rng_state()
    first = trained_stand_in(TINY, root=tmp_path / "a")
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    assert not first.loaded and first.path.exists() and first.path.parent == tmp_path / "a"
    assert 0.0 <= first.test_accuracy <= 1.0 and not first.model.training
    again = trained_stand_in(TINY, root=tmp_path / "b")  # a fresh training with the same seed
    for (name, a), (_, b) in zip(first.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    loaded = trained_stand_in(TINY, root=tmp_path / "a")
    assert loaded.loaded and loaded.test_accuracy == first.test_accuracy
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                 loaded.model.state_dict().values(), strict=True))
    assert not list(tmp_path.glob("*/*.partial"))


def test_the_cache_key_follows_every_setting():
    keys = {StandInSettings().key(), StandInSettings(epochs=2).key(), StandInSettings(seed=1).key(),
            StandInSettings(width=8).key()}
    assert len(keys) == 4


def test_gap_cnn_takes_any_size_and_grad_cam_finds_its_last_relu():
    model = GapCNN(width=4)
    x, labels, masks = two_object_split(3, 0)
    assert x.shape == (3, 3, 32, 48) and labels.shape == (3, 2) and masks.shape == (3, 2, 32, 48)
    assert model(x).shape == (3, 10) and model(x[..., :32]).shape == (3, 10)
    assert default_cam_layer(model) == "features.9"


def test_synthesis_checks_leave_the_model_as_found():
    torch.manual_seed(0)
    model = GapCNN(width=4).train()
    before = model_state(model)
    x, labels, _ = two_object_split(2, 0)
    checks = synthesis_checks(model, x, labels, class_steps=3, filter_steps=3, dream_steps=2)
    assert_same_state(before, model_state(model))
    assert set(checks.class_ratio) == {"vertical stripes", "horizontal stripes"}
    assert 0 <= checks.filter_channel < 4 and 0 <= checks.angle_error <= 90
    assert checks.class_images.shape == (2, 3, 32, 32) and checks.dream_images.shape == x.shape
    assert torch.isfinite(torch.tensor([checks.dream_gain_present, checks.dream_gain_absent])).all()


def test_synthesis_checks_take_target_and_one_image():
    torch.manual_seed(0)
    model = GapCNN(width=4).eval()
    x, labels, _ = two_object_split(1, 0)
    settings = {"class_steps": 2, "filter_steps": 2, "dream_steps": 1}
    one = synthesis_checks(model, x[0], target=labels[0], **settings)  # one (3, H, W) image
    batch = synthesis_checks(model, x, labels, **settings)
    assert one.dream_images.shape == x.shape and torch.equal(one.dream_images, batch.dream_images)
    assert one.dream_gain_present == pytest.approx(batch.dream_gain_present, rel=1e-4, abs=1e-6)
    assert one.dream_gain_absent == pytest.approx(batch.dream_gain_absent, rel=1e-4, abs=1e-6)


def test_synthesis_checks_pass_amp_and_channels_last_to_the_ascents():
    torch.manual_seed(0)
    model = GapCNN(width=4).eval()
    x, labels, _ = two_object_split(1, 0)
    settings = {"class_steps": 3, "filter_steps": 3, "dream_steps": 2}
    plain = synthesis_checks(model, x, labels, **settings)
    nchw = synthesis_checks(model, x, labels, channels_last=False, **settings)
    fast = synthesis_checks(model, x, labels, amp=True, **settings)
    for a, b in [(plain.class_images, nchw.class_images), (plain.filter_image, nchw.filter_image),
                 (plain.dream_images, nchw.dream_images)]:
        assert torch.allclose(a, b, atol=1e-4)
    # bfloat16 autocast reached every ascent: each image differs from the float32 run, yet stays close
    for a, b in [(plain.class_images, fast.class_images), (plain.filter_image, fast.filter_image),
                 (plain.dream_images, fast.dream_images)]:
        assert not torch.equal(a, b) and (a - b).abs().max() < 0.5
