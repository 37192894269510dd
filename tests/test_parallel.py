"""fit_many: the same runs as fit in this process, whether they train in worker processes or not; errors, Ctrl-C
and a failed start leave no worker behind. Every test that starts workers pays their start (importing torch and
helpers, a few seconds), so the data are tiny."""

import multiprocessing
import os
import subprocess
import sys
import types
from multiprocessing.context import SpawnProcess
from pathlib import Path

import pytest
import torch
from torch import nn

import helpers
import helpers.parallel as parallel
from helpers import LeNet, TensorLoader, fit, fit_many, synthetic_cifar10_images

EPOCHS = 2
LONG = 100_000  # epochs of 3 steps: many minutes, so a worker not stopped is still running at the check (no clock:
#                 a caller that waited for the runs instead of stopping them would hang, not pass)


def split(n: int, seed: int) -> types.SimpleNamespace:
    """What TensorLoader reads from a torchvision CIFAR10: ``data`` uint8 (N, 32, 32, 3) and ``targets``."""
    images, labels = synthetic_cifar10_images(n, seed)
    return types.SimpleNamespace(data=images, targets=labels.tolist())


TRAIN, TEST = split(48, 0), split(32, 1)


def sheet4_runs(model_class=LeNet, seed: int = 3) -> dict:
    """The sheet's two runs at toy size: plain, and normalized + augmented (shuffled loaders seeded by ``seed``).
    The plain model comes in eval mode, the augmented one in train mode: both must leave as they came."""
    runs = {}
    for name, changed in (("plain", False), ("augmented", True)):
        torch.manual_seed(0)
        model = model_class().train(changed)
        runs[name] = (model, TensorLoader(TRAIN, 16, shuffle=True, augment=changed, normalize=changed, seed=seed),
                      TensorLoader(TEST, 16, shuffle=False, normalize=changed))
    return runs


def in_process(runs: dict) -> dict:
    """The reference: fit, one run after the other, on one thread (the workers' thread count on two cores)."""
    return {name: fit(model, train, test, EPOCHS, threads=1, show_progress=False)
            for name, (model, train, test) in runs.items()}


def weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().flatten() for t in model.state_dict().values()])


def assert_same_runs(a: dict, histories_a: dict, b: dict, histories_b: dict) -> None:
    """The same training up to float32 rounding. Bit-equal when both ran the same kernels on one thread. Under
    --fp-noise (which perturbs this process only, not the workers) rounding flips a few max-pool choices between
    near-equal values and so routes some gradients elsewhere: then the weights must still be far closer than two
    runs that differ only in the shuffling seed (a hundredth of their distance), and the accuracy curves no further
    apart than those two runs' curves plus one image. The loaders' random state and the modules' modes are equal."""
    other_runs = sheet4_runs(seed=4)
    other = in_process(other_runs)
    for name in a:
        w_a, w_b, w_other = weights(a[name][0]), weights(b[name][0]), weights(other_runs[name][0])
        assert torch.linalg.norm(w_a - w_b) <= 0.01 * torch.linalg.norm(w_b - w_other), name  # 5e-4 measured
        for curve, n in (("train_acc", len(TRAIN.targets)), ("test_acc", len(TEST.targets))):
            ours, reference, spread = (getattr(h[name], curve) for h in (histories_a, histories_b, other))
            gaps = [abs(x - y) for x, y in zip(ours, reference, strict=True)]
            spreads = [abs(x - y) for x, y in zip(reference, spread, strict=True)]
            assert all(g <= s + 1.01 / n for g, s in zip(gaps, spreads, strict=True)), (name, curve, gaps, spreads)
        assert torch.equal(a[name][1].generator.get_state(), b[name][1].generator.get_state())
        assert [m.training for m in a[name][0].modules()] == [m.training for m in b[name][0].modules()]


def test_workers_train_the_same_runs_as_fit_and_hand_back_the_trained_models(monkeypatch):
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 2)  # one thread per worker also on a machine with more cores
    reference = sheet4_runs()
    expected = in_process(reference)
    runs = sheet4_runs()
    untrained = {name: weights(model) for name, (model, _, _) in runs.items()}
    rng = torch.get_rng_state()
    histories = fit_many(runs, EPOCHS, concurrent=True, show_progress=False)
    assert list(histories) == ["plain", "augmented"]
    assert all(h.threads == [1] * EPOCHS for h in histories.values())  # one thread per worker on two cores
    for name, (model, _, _) in runs.items():
        assert not torch.equal(weights(model), untrained[name])  # the caller's model holds the trained weights
    assert_same_runs(runs, histories, reference, expected)
    assert not runs["plain"][0].training and runs["augmented"][0].training  # the modes they came with
    assert torch.equal(torch.get_rng_state(), rng)
    assert multiprocessing.active_children() == []


def test_each_worker_starts_from_the_callers_global_rng_state(monkeypatch):
    """A run whose randomness is the global RNG's (dropout) trains in a worker as fit trains it from the caller's
    state, in both workers alike; a run from another global seed is the scale of "different"."""
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 2)
    trained = dropout_references()
    runs = {"a": dropout_run(), "b": dropout_run()}
    torch.manual_seed(7)
    fit_many(runs, EPOCHS, concurrent=True, show_progress=False)
    scale = torch.linalg.norm(trained[8] - trained[7])
    for name, (model, _, _) in runs.items():
        assert torch.linalg.norm(weights(model) - trained[7]) <= 0.01 * scale, name


def test_in_process_every_run_starts_from_the_callers_rng_state_as_in_a_worker():
    """The fallback gives the numbers the workers give: each run from the caller's RNG state, left as found."""
    trained = dropout_references()
    runs = {"a": dropout_run(), "b": dropout_run()}
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    fit_many(runs, EPOCHS, threads=1, concurrent=False, show_progress=False)
    for name, (model, _, _) in runs.items():
        assert torch.equal(weights(model), trained[7]), name  # the same kernels in the same process
    assert torch.equal(torch.get_rng_state(), rng)


def dropout_run() -> tuple:
    """A run whose randomness is partly the global RNG's: dropout on LeNet's logits."""
    torch.manual_seed(0)
    return nn.Sequential(LeNet(), nn.Dropout(0.5)), TensorLoader(TRAIN, 16, shuffle=True, seed=3), None


def dropout_references() -> dict[int, torch.Tensor]:
    """The trained weights of :func:`dropout_run` by fit from global seeds 7 and 8."""
    trained = {}
    for seed in (7, 8):
        model, train, _ = dropout_run()
        torch.manual_seed(seed)
        fit(model, train, None, EPOCHS, threads=1, show_progress=False)
        trained[seed] = weights(model)
    return trained


def test_one_core_trains_in_process_with_a_message(monkeypatch):
    monkeypatch.setattr(parallel, "cpu_cores", lambda: 1)
    monkeypatch.setattr(SpawnProcess, "start", lambda self: pytest.fail("no worker process on one core"))
    reference, runs = sheet4_runs(), sheet4_runs()
    expected = in_process(reference)
    with pytest.warns(RuntimeWarning, match=r"1 CPU core, so the 2 runs train one after the other in this process"):
        histories = fit_many(runs, EPOCHS, threads=1, show_progress=False)
    assert_same_runs(runs, histories, reference, expected)


def test_a_process_that_cannot_start_falls_back_to_training_in_process(monkeypatch):
    def refuse(self):
        raise OSError("no processes here")

    monkeypatch.setattr(SpawnProcess, "start", refuse)
    reference, runs = sheet4_runs(), sheet4_runs()
    expected = in_process(reference)
    with pytest.warns(RuntimeWarning, match=r"could not start \(OSError: no processes here\), so the 2 runs train"):
        histories = fit_many(runs, EPOCHS, threads=1, concurrent=True, show_progress=False)
    assert_same_runs(runs, histories, reference, expected)
    assert multiprocessing.active_children() == []


class NotebookLeNet(LeNet):
    """A model class the workers cannot import, as one defined in a notebook (its module exists only here)."""


def test_a_model_the_workers_cannot_load_trains_in_process(monkeypatch):
    module = types.ModuleType("cnnvis_notebook_only")
    NotebookLeNet.__module__ = module.__name__
    module.NotebookLeNet = NotebookLeNet
    monkeypatch.setitem(sys.modules, module.__name__, module)
    reference, runs = sheet4_runs(NotebookLeNet), sheet4_runs(NotebookLeNet)
    expected = in_process(reference)
    with pytest.warns(RuntimeWarning, match=r"could not load it \(ModuleNotFoundError: .*cnnvis_notebook_only"):
        histories = fit_many(runs, EPOCHS, threads=1, concurrent=True, show_progress=False)
    assert_same_runs(runs, histories, reference, expected)
    assert multiprocessing.active_children() == []


def test_an_error_in_a_worker_is_raised_here_with_the_run_name():
    runs = sheet4_runs()
    model, _, test = runs["augmented"]
    bad = types.SimpleNamespace(data=TRAIN.data, targets=[12] * len(TRAIN.targets))  # a label LeNet does not have
    runs["augmented"] = (model, TensorLoader(bad, 16, shuffle=True), test)
    before = weights(model)
    with pytest.raises(ValueError, match=r"^run 'augmented': label\(s\) \[12\] out of range") as error:
        fit_many(runs, LONG, concurrent=True, show_progress=False)  # the plain run would go on for minutes
    assert "\n" not in str(error.value)
    assert torch.equal(weights(model), before)  # nothing is loaded from a failed run
    assert multiprocessing.active_children() == []


def test_ctrl_c_while_waiting_stops_every_worker(monkeypatch):
    class Interrupting:  # the progress bar: Ctrl-C arrives while the caller shows the first progress report
        def update(self, steps):
            raise KeyboardInterrupt

        def close(self):
            pass

    monkeypatch.setattr(parallel, "progress", lambda **kwargs: Interrupting())
    with pytest.raises(KeyboardInterrupt):
        fit_many(sheet4_runs(), LONG, concurrent=True)  # Ctrl-C in epoch 34 of runs that would go on for minutes
    assert multiprocessing.active_children() == []


def test_bad_runs_are_refused_before_any_process_starts(monkeypatch):
    monkeypatch.setattr(SpawnProcess, "start", lambda self: pytest.fail("started a worker for a bad call"))
    with pytest.raises(TypeError, match="non-empty dict"):
        fit_many({}, 1)
    with pytest.raises(TypeError, match=r"run 'plain' must be a tuple \(model, train_loader, test_loader\)"):
        fit_many({"plain": (LeNet(), TensorLoader(TRAIN, 16, shuffle=True))}, 1)
    empty = types.SimpleNamespace(data=TRAIN.data[:0], targets=[])
    with pytest.raises(ValueError, match="the train_loader of run 'b' is empty"):
        fit_many({"a": (LeNet(), TensorLoader(TRAIN, 16, shuffle=True), None),
                  "b": (LeNet(), TensorLoader(empty, 16, shuffle=True), None)}, 1)
    with pytest.raises(ValueError, match="epochs"):
        fit_many(sheet4_runs(), 0)
    loader, test = TensorLoader(TRAIN, 16, shuffle=True), TensorLoader(TEST, 16, shuffle=False)
    with pytest.raises(ValueError, match=r"runs \['a', 'b'\] share one train_loader object"):
        fit_many({"a": (LeNet(), loader, test), "b": (LeNet(), loader, test), "c": (LeNet(), TensorLoader(
            TRAIN, 16, shuffle=True), test)}, 1)
    with pytest.raises(ValueError, match="threads must be a positive number of CPU threads, 'auto' or None"):
        fit_many(sheet4_runs(), 1, threads=0, concurrent=True)


SCRIPT_WITHOUT_MAIN_GUARD = """
import types
import helpers as H
images, labels = H.synthetic_cifar10_images(32, 0)
data = types.SimpleNamespace(data=images, targets=labels.tolist())
runs = {name: (H.LeNet(), H.TensorLoader(data, 16, shuffle=True), None) for name in ("a", "b")}
H.fit_many(runs, 1, concurrent=True, show_progress=False)
print("trained", flush=True)
"""


def test_a_script_without_the_main_guard_trains_once_and_says_why(tmp_path):
    """Each spawned worker imports the script first; there fit_many must fail at once (multiprocessing's own rule),
    not train every run itself and only then start the worker's run."""
    script = tmp_path / "no_guard.py"
    script.write_text(SCRIPT_WITHOUT_MAIN_GUARD, encoding="utf-8")
    package_root = str(Path(helpers.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["trained"]  # the caller's run only: no worker trained the script's runs
    assert parallel.MAIN_GUARD_FIX in done.stderr  # a worker says what to fix (a slow one may be stopped first)
    assert "so the 2 runs train one after the other in this process" in done.stderr
    assert multiprocessing.active_children() == []
