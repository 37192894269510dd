import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import evaluate, fit, train_epoch


class Fixed(nn.Module):
    """Predicts class 0 for inputs with a positive first feature, else class 1."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.stack([x[:, 0], -x[:, 0]], 1) + self.dummy


def test_evaluate_counts_correct_predictions_and_restores_mode():
    x = torch.tensor([[1.0], [2.0], [-1.0], [-3.0], [4.0]])
    y = torch.tensor([0, 0, 1, 0, 1])  # 3 of 5 right
    model = Fixed().train()
    assert evaluate(model, DataLoader(TensorDataset(x, y), batch_size=2)) == 0.6
    assert model.training


def test_fit_learns_and_records_history():
    torch.manual_seed(0)
    x = torch.randn(512, 2)
    y = (x[:, 0] + x[:, 1] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    history = fit(model, loader, loader, epochs=3, lr=1e-2)
    assert not model.training  # the mode it came in with
    assert history.epochs == [1, 2, 3] and len(history.test_acc) == 3 and len(history.seconds) == 3
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.test_acc[-1] > 0.9


def test_fit_sets_train_mode_during_training_and_eval_mode_for_testing():
    seen = []

    class Spy(nn.Linear):
        def forward(self, x):
            seen.append(self.training)
            return super().forward(x)

    data = DataLoader(TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,))), batch_size=4)
    fit(Spy(3, 2), data, data, epochs=1)
    assert seen == [True, True, False, False]


def test_fit_accepts_an_optimizer_factory():
    data = DataLoader(TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,))), batch_size=4)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    history = fit(model, data, None, epochs=1, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    assert not torch.equal(before, model.weight) and history.test_acc == []


def test_fit_runs_with_the_requested_threads_and_restores_the_setting():
    seen = []

    class Spy(nn.Linear):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return super().forward(x)

    data = DataLoader(TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,))), batch_size=4)
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    fit(Spy(3, 2), data, data, epochs=1, threads=wanted)
    assert seen == [wanted] * 4  # two training and two test batches
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        fit(Spy(3, 2), data, None, epochs=1, threads=0)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(("one_thread_ticks", "faster"), [(3.0, 2), (0.5, 1)])
def test_fit_auto_threads_probes_one_and_torchs_setting_then_keeps_the_faster(monkeypatch, one_thread_ticks, faster):
    import helpers.training as training

    seen = []

    class Spy(nn.Linear):
        def forward(self, x):
            if self.training:
                seen.append(torch.get_num_threads())
            return super().forward(x)

    data = DataLoader(TensorDataset(torch.randn(200, 3), torch.randint(0, 2, (200,))), batch_size=2)  # 100 steps
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ticks = {"t": 0.0}

        def perf_counter():
            return ticks["t"]

        class Timed(Spy):  # a step on two threads "takes" 1 tick, on one thread `one_thread_ticks`
            def forward(self, x):
                if self.training:
                    ticks["t"] += one_thread_ticks if torch.get_num_threads() == 1 else 1.0
                return super().forward(x)

        monkeypatch.setattr(training.time, "perf_counter", perf_counter)
        history = fit(Timed(3, 2), data, None, epochs=2, threads="auto")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    w, p = training._ThreadChooser.WARMUP, training._ThreadChooser.PROBE
    epoch = seen[:100]
    assert epoch[:w + p] == [1] * (w + p) and epoch[w + p:w + 2 * p] == [2] * p  # probes: one thread, then two
    assert set(epoch[w + 2 * p:]) == {faster} and history.threads == [faster, faster]  # the faster is kept
    assert seen[100:100 + w + p] == [1] * (w + p)  # every epoch probes anew
    with pytest.raises(ValueError, match="threads"):
        fit(Spy(3, 2), data, None, epochs=1, threads="fast")


# ---------------------------------------------------------------- bad inputs (issue 24)

def _mixed_modes() -> nn.Module:
    """A model in train mode whose BatchNorm is kept in eval mode (frozen statistics): a mixed state."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    model[1].eval()
    return model


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


class _Breaks:
    """A loader of two batches that raises ``error`` at the second."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __len__(self) -> int:
        return 2

    def __iter__(self):
        yield torch.randn(4, 3), torch.randint(0, 2, (4,))
        raise self.error


def test_fit_and_evaluate_restore_each_modules_own_flag_also_after_errors_and_ctrl_c():
    data = DataLoader(TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,))), batch_size=4)
    model = _mixed_modes()
    expected = _flags(model)
    assert expected == [True, True, False, True]
    fit(model, data, data, epochs=1)
    assert _flags(model) == expected
    evaluate(model, data)
    assert _flags(model) == expected
    for error in (RuntimeError("disk gone"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            fit(model, _Breaks(error), None, epochs=1)
        assert _flags(model) == expected
        with pytest.raises(type(error)):
            evaluate(model, _Breaks(error))
        assert _flags(model) == expected
    with pytest.raises(ValueError, match="epochs"):
        fit(model, data, None, epochs=0)
    assert _flags(model) == expected


def test_fit_stops_with_an_error_naming_lr_when_the_loss_becomes_non_finite():
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(64, 3), torch.randint(0, 2, (64,))), batch_size=8)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(FloatingPointError, match=r"loss became nan in epoch 1: .*lower lr=1e\+30"):
        fit(model, data, None, epochs=3, lr=1e30)
    with pytest.raises(FloatingPointError, match="the learning rate of your optimizer factory"):
        fit(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)), data, None, epochs=1,
            optimizer=lambda p: torch.optim.SGD(p, lr=1e30))


def test_fit_refuses_bad_arguments_with_the_fix():
    data = DataLoader(TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,))), batch_size=4)
    empty = DataLoader(TensorDataset(torch.randn(0, 3), torch.randint(0, 2, (0,))), batch_size=4)
    model = nn.Linear(3, 2)
    before = model.weight.detach().clone()
    for epochs in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"^epochs must be an integer >= 1"):
            fit(model, data, None, epochs=epochs)
    with pytest.raises(ValueError, match="^train_loader is empty"):
        fit(model, empty, None, epochs=1)
    with pytest.raises(ValueError, match="^test_loader is empty"):
        fit(model, data, empty, epochs=1)
    with pytest.raises(ValueError, match="^loader is empty"):
        evaluate(model, empty)
    with pytest.raises(TypeError, match=r"optimizer is a factory .*torch\.optim\.SGD\(p, lr=0\.01\).*not 'sgd'"):
        fit(model, data, None, epochs=1, optimizer="sgd")
    with pytest.raises(ValueError, match="does not support torch.optim.LBFGS"):
        fit(model, data, None, epochs=1, optimizer=torch.optim.LBFGS)
    for lr, error in ((float("nan"), ValueError), (-1e-3, ValueError), ("1e-3", TypeError)):
        with pytest.raises(error, match="^lr must be"):
            fit(model, data, None, epochs=1, lr=lr)
    assert torch.equal(model.weight, before)  # refused before any step
    with pytest.raises(ValueError, match=r"label\(s\) \[10\] out of range: the model gives 2 classes, .*0\.\.1"):
        fit(model, DataLoader(TensorDataset(torch.randn(4, 3), torch.tensor([0, 1, 10, 1])), batch_size=4), None,
            epochs=1)
    assert fit(model, data, None, epochs=np.int64(1)).epochs == [1]


def test_train_epoch_is_one_adam_pass_with_cross_entropy():
    # Two copies, one trained by train_epoch and one by the textbook loop written out here: the same weights.
    torch.manual_seed(0)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    ours = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    theirs = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    theirs.load_state_dict(ours.state_dict())
    loss, accuracy = train_epoch(ours, batches, torch.optim.Adam(ours.parameters(), lr=1e-2))
    opt = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    losses, correct = [], 0
    for xb, yb in batches:
        out = theirs(xb)
        step_loss = nn.functional.cross_entropy(out, yb)
        opt.zero_grad()
        step_loss.backward()
        opt.step()
        losses.append(step_loss.item())
        correct += (out.argmax(1) == yb).sum().item()
    assert ours.training  # train mode, as the sheet asks (fit restores the caller's mode)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert loss == pytest.approx(sum(losses) / 4, rel=1e-5) and accuracy == correct / 64


def test_fits_fused_adam_takes_the_steps_of_torchs_default_adam_within_float32_rounding():
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(48, 5), torch.randint(0, 3, (48,))), batch_size=16)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    textbook = copy.deepcopy(model)
    fit(model, data, None, epochs=2, lr=1e-2)
    opt = torch.optim.Adam(textbook.parameters(), lr=1e-2, foreach=False)  # the plain per-parameter loop
    for _ in range(2):
        for x, y in data:
            opt.zero_grad()
            nn.functional.cross_entropy(textbook(x), y).backward()
            opt.step()
    for a, b in zip(model.parameters(), textbook.parameters(), strict=True):  # 6 steps moved them by up to 0.06
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
