import pytest
import torch

from helpers import default_device, pick, quick_mode
from helpers.config import offline_opt_in, progress


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("yes", True), ("0", False), ("", False)])
def test_switches(monkeypatch, value, expected):
    monkeypatch.setenv("CNNVIS_QUICK", value)
    monkeypatch.setenv("CNNVIS_OFFLINE", value)
    assert quick_mode() is expected and offline_opt_in() is expected
    assert pick(100, 2) == (2 if expected else 100)


def test_progress_switch(monkeypatch):
    assert progress(range(3)).disable  # CNNVIS_PROGRESS=0 in the tests
    monkeypatch.setenv("CNNVIS_PROGRESS", "1")
    assert not progress(range(3)).disable
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress(range(3)).disable
    assert list(progress(range(3))) == [0, 1, 2]


def test_default_device():
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_stand_in_note():
    from types import SimpleNamespace

    from helpers import stand_in_note

    real_model, real_data = SimpleNamespace(is_pretrained=True), SimpleNamespace(is_synthetic=False)
    assert stand_in_note(real_model, real_data) == ""
    note = stand_in_note(SimpleNamespace(is_pretrained=False), SimpleNamespace(is_synthetic=True))
    assert note.startswith("OFFLINE STAND-IN") and "RANDOM weights" in note and "SYNTHETIC" in note
