"""Training and evaluating a classifier the way exercise sheet 4 asks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from ._checks import check_optimizer, finite_number, kept_modes, positive_int
from .config import progress

SGD_EXAMPLE = "lambda p: torch.optim.SGD(p, lr=0.01)"
FUSED_ADAM_DEVICES = ("cpu", "cuda")  # where fit's Adam runs fused (``torch.optim.Adam(..., fused=True)``)


@dataclass
class History:
    """Per-epoch record of :func:`fit`; accuracies are fractions in [0, 1]."""

    train_acc: list[float] = field(default_factory=list)   # running accuracy over each epoch, train mode
    train_loss: list[float] = field(default_factory=list)  # mean cross-entropy over each epoch
    test_acc: list[float] = field(default_factory=list)    # accuracy on the test loader after each epoch, eval mode
    seconds: list[float] = field(default_factory=list)     # wall time of each epoch (training + evaluation)
    threads: list[int] = field(default_factory=list)       # CPU threads used for most of each epoch's steps

    @property
    def epochs(self) -> list[int]:
        """Epoch numbers 1..n, for the x-axis."""
        return list(range(1, len(self.train_acc) + 1))


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, *,
             device: torch.device | str | None = None) -> float:
    """Accuracy of ``model`` on ``loader`` in eval mode; every module's own train/eval flag is
    restored afterwards (also on an error or Ctrl-C). A loader of length 0 is a
    ``ValueError``."""
    device = next(model.parameters()).device if device is None else torch.device(device)
    not_empty(loader, "loader")
    with kept_modes(model):
        model.eval()
        correct = total = 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.numel()
    return correct / max(total, 1)


def not_empty(loader: Iterable, name: str) -> None:
    """``ValueError`` naming ``name`` for a loader of length 0 (e.g. a DataLoader over an empty dataset)."""
    if hasattr(loader, "__len__") and len(loader) == 0:
        raise ValueError(f"{name} is empty (no batches): check its dataset, subset and batch_size")


class CrossEntropy(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` whose error for a label outside the model's classes names their number."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        try:
            return super().forward(logits, labels)
        except IndexError:  # torch's "Target 10 is out of bounds." (on the CPU, raised at once)
            classes = logits.shape[-1]
            bad = labels[(labels < 0) | (labels >= classes)].unique().tolist()
            raise ValueError(f"label(s) {bad} out of range: the model gives {classes} classes, so labels must be "
                             f"0..{classes - 1}; fix the labels or give the model's last layer more outputs") from None


def train_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, *,
                device: torch.device | str | None = None,
                loss_fn: Callable = nn.functional.cross_entropy) -> tuple[float, float]:
    """One pass over ``loader`` in train mode: cross-entropy loss, backward pass, optimizer
    step per batch.

    Returns ``(mean loss, accuracy)`` over the epoch, both running values (the weights change
    during it); the model is left in train mode (:func:`fit` restores the caller's mode).
    ``loss_fn(logits, labels)``: the loss, cross-entropy by default (:func:`fit` passes
    :class:`CrossEntropy`, whose error names a bad label).
    """
    device = next(model.parameters()).device if device is None else torch.device(device)
    model.train()                                  # dropout/BN in training mode (LeNet: none)
    loss_sum = correct = seen = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)                          # (N, 10) class scores
        loss = loss_fn(logits, y)                  # cross-entropy, mean over the batch
        optimizer.zero_grad()
        loss.backward()                            # gradients of the mean loss of the batch
        optimizer.step()                           # Adam's update of every weight
        loss_sum += loss.detach() * len(y)         # kept as a tensor: no device sync per step
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return float(loss_sum) / max(seen, 1), float(correct) / max(seen, 1)


def fit(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader | None, epochs: int, *,
        lr: float = 1e-3, optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        device: torch.device | str | None = None, threads: int | str | None = None,
        show_progress: bool | None = None) -> History:
    """Train with cross-entropy and Adam (sheet 4: lr 1e-3), evaluating on the test set after every epoch.

    Adam runs fused on a CPU or CUDA device (``fused=True``: the whole update in one kernel instead of a dozen
    operator calls per parameter; the same formula as torch's default implementation, equal within float32
    rounding, see ``benchmarks/README.md`` for the time it saves).

    ``model.train()`` while training, ``model.eval()`` while evaluating; every module's own train/eval flag is
    restored at the end, also on an error or Ctrl-C. Weights are updated in place (that is the point). The loss is
    checked once per epoch: a NaN/inf loss (a diverging run, e.g. a far too large ``lr``) stops with a
    ``FloatingPointError``.

    Args:
        model: classifier producing logits ``(N, classes)``.
        train_loader: yields ``(images (N, C, H, W), labels (N,))``.
        test_loader: evaluated after every epoch; None skips evaluation.
        epochs: number of passes over ``train_loader``.
        lr: learning rate of the default Adam optimizer.
        optimizer: factory ``params -> Optimizer`` replacing Adam (e.g. ``lambda p: torch.optim.SGD(p, 0.01)``;
            not L-BFGS, whose step needs a closure).
        device: where to train; default the model's device.
        threads: CPU threads for the run (``torch.set_num_threads``, restored afterwards); None keeps
            torch's setting. ``"auto"``: at the start of every epoch, time a few steps on one thread and on
            torch's setting and train the rest of the epoch with the faster (a small step splits well over
            idle cores but is many times slower when other processes share them and threads wait for each
            other); ``History.threads`` records the choice.
        show_progress: one progress bar per epoch; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`History` with per-epoch train accuracy/loss and test accuracy.
    """
    device = next(model.parameters()).device if device is None else torch.device(device)
    epochs = positive_int(epochs, "epochs")
    lr = finite_number(lr, "lr", minimum=0)
    if optimizer is not None and not callable(optimizer):
        raise TypeError(f"optimizer is a factory params -> Optimizer, e.g. optimizer={SGD_EXAMPLE}, not "
                        f"{optimizer!r}; leave it None for Adam with lr={lr:g}")
    not_empty(train_loader, "train_loader")
    if test_loader is not None:
        not_empty(test_loader, "test_loader")
    fused = device.type in FUSED_ADAM_DEVICES  # the whole update in one kernel
    if optimizer is None:  # the sheet's optimizer
        opt = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    else:
        opt = check_optimizer(optimizer(model.parameters()), "fit",
                              f"e.g. optimizer={SGD_EXAMPLE}, or None for Adam")
    loss_fn = CrossEntropy()  # nn.CrossEntropyLoss; a bad label names its fix
    history = History()
    threads_before = torch.get_num_threads()
    auto = threads == "auto"
    if check_threads(threads) is not None and not auto:
        torch.set_num_threads(threads)
    try:
        with kept_modes(model):
            for epoch in range(1, epochs + 1):
                start = time.perf_counter()
                batches = progress(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, enabled=show_progress)
                chooser = _ThreadChooser((1, threads_before)) if auto and device.type == "cpu" else None
                loss, accuracy = train_epoch(model, chooser.steps(batches) if chooser else batches, opt, device=device,
                                             loss_fn=loss_fn)
                history.threads.append(chooser.chosen if chooser is not None else torch.get_num_threads())
                history.train_loss.append(loss)
                check_loss(loss, epoch, lr if optimizer is None else None)
                history.train_acc.append(accuracy)
                if test_loader is not None:
                    history.test_acc.append(evaluate(model, test_loader, device=device))
                history.seconds.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads_before)
    return history


def check_threads(threads: int | str | None) -> int | str | None:
    """``threads`` of :func:`fit` when it is a positive int, ``"auto"`` or None, else a ``ValueError``."""
    if threads is None or threads == "auto":
        return threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive number of CPU threads, 'auto' or None, got {threads!r}")
    return threads


def check_loss(loss: float, epoch: int, lr: float | None) -> None:
    """``FloatingPointError`` naming the learning rate when an epoch's mean loss is NaN/inf (``lr`` None: the
    caller's optimizer factory set it)."""
    if not math.isfinite(loss):
        rate = f"lr={lr:g}" if lr is not None else "the learning rate of your optimizer factory"
        raise FloatingPointError(f"the training loss became {loss} in epoch {epoch}: training diverged and the weights "
                                 f"are no longer finite; lower {rate} and train a freshly initialized model")


class _ThreadChooser:
    """Times ``PROBE`` steps on each candidate thread count (after ``WARMUP`` steps) at the start of an epoch and
    sets the faster one for the rest of it (:func:`fit` with ``threads="auto"``)."""

    WARMUP, PROBE = 5, 20

    def __init__(self, candidates: tuple[int, ...]) -> None:
        self.candidates = tuple(dict.fromkeys(candidates))  # (1, n) without a repeat when n == 1
        self.times: list[float] = []
        self.chosen = self.candidates[0]
        self._start = 0.0
        torch.set_num_threads(self.chosen)

    def steps(self, batches: Iterable) -> Iterator:
        """``batches`` with :meth:`before` called ahead of each one, for :func:`train_epoch`'s loop."""
        for step, batch in enumerate(batches):
            self.before(step)
            yield batch

    def before(self, step: int) -> None:
        """Call before training step ``step`` (0-based) of the epoch."""
        k, offset = divmod(step - self.WARMUP, self.PROBE)
        if step < self.WARMUP or offset or k > len(self.candidates):
            return
        now = time.perf_counter()
        if k > 0:  # the probe of candidate k - 1 ends here
            self.times.append(now - self._start)
        if k < len(self.candidates):
            torch.set_num_threads(self.candidates[k])
            self._start = now
        else:
            self.chosen = self.candidates[min(range(len(self.times)), key=self.times.__getitem__)]
            torch.set_num_threads(self.chosen)
