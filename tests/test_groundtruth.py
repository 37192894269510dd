import pytest
import torch
from conftest import assert_same_numbers, assert_same_state, model_state

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


def test_synthesis_checks_take_one_image_and_its_target():
    torch.manual_seed(0)
    model = GapCNN(width=4).eval()
    x, labels, _ = two_object_split(1, 0)
    settings = {"class_steps": 2, "filter_steps": 2, "dream_steps": 1}
    one = synthesis_checks(model, x[0], target=labels[0], **settings)  # one (3, H, W) image, a scalar target
    batch = synthesis_checks(model, x, target=labels, **settings)
    # The same images by another route through the batching code: equal up to fp32 rounding (measured up to 1e-7 of
    # the images' scale under ATEN_CPU_CAPABILITY=default). The gains are differences of mean logits, so their
    # rounding is relative to the logits' size, not to the (small) gain.
    assert one.dream_images.shape == x.shape
    assert_same_numbers(one.dream_images, batch.dream_images, rel=1e-5)
    with torch.no_grad():
        logit_scale = model(x).abs().max().item()
    assert one.dream_gain_present == pytest.approx(batch.dream_gain_present, rel=0, abs=1e-5 * logit_scale)
    assert one.dream_gain_absent == pytest.approx(batch.dream_gain_absent, rel=0, abs=1e-5 * logit_scale)


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


# ---------------------------------------------------------------- a broken cache (issue 24)

@pytest.mark.parametrize("damage", ["garbage", "empty", "half-written"])
def test_an_unreadable_cache_names_the_file_and_retrain(tmp_path, damage):
    made = trained_stand_in(TINY, root=tmp_path)
    data = made.path.read_bytes()
    made.path.write_bytes({"garbage": b"not a torch file\n" * 10, "empty": b"",
                           "half-written": data[:len(data) // 2]}[damage])
    with pytest.raises(ValueError, match=r"stand-in cache .*groundtruth-.*\.pt is unreadable .*retrain=True") as error:
        trained_stand_in(TINY, root=tmp_path)
    assert str(made.path) in str(error.value) and "\n" not in str(error.value)
    again = trained_stand_in(TINY, root=tmp_path, retrain=True)  # the fix the message names
    assert not again.loaded and trained_stand_in(TINY, root=tmp_path).loaded


def test_a_root_that_is_a_file_is_refused_before_training(tmp_path, monkeypatch):
    import helpers.trust.groundtruth as groundtruth

    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking root")

    monkeypatch.setattr(groundtruth, "fit", no_training)
    (tmp_path / "data").write_text("a file")
    for root in (tmp_path / "data", tmp_path / "data" / "sub"):
        with pytest.raises(ValueError, match=r"root=.* is not a folder"):
            trained_stand_in(TINY, root=root)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"epochs": -1}, {"n_train": 0}, {"batch_size": 0},
                                 {"lr": float("nan")}, {"width": 2.5}])
def test_settings_that_train_nothing_are_refused(bad):
    with pytest.raises(ValueError, match=f"StandInSettings.{next(iter(bad))}"):
        StandInSettings(**bad)


def test_two_writers_of_the_same_stand_in_both_succeed(tmp_path, monkeypatch):
    import threading

    import helpers.trust.groundtruth as groundtruth

    real_save = torch.save
    both_saved = threading.Barrier(2)

    def slow_save(obj, f, *args, **kwargs):  # a slow disk: each writer finishes its file before either renames it
        real_save(obj, f, *args, **kwargs)
        both_saved.wait(timeout=60)

    monkeypatch.setattr(groundtruth.torch, "save", slow_save)
    results, errors = [], []

    def train():
        try:
            results.append(trained_stand_in(TINY, root=tmp_path, retrain=True))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    writers = [threading.Thread(target=train) for _ in range(2)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
    assert not errors and len(results) == 2
    monkeypatch.setattr(groundtruth.torch, "save", real_save)
    assert trained_stand_in(TINY, root=tmp_path).loaded
    assert [p.name for p in tmp_path.iterdir()] == [results[0].path.name]  # no temporary file left behind
