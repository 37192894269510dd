"""Independent training runs side by side in worker processes: :func:`fit_many`.

Sheet 4 trains two LeNets (plain, and normalized + augmented) that share nothing. A batch-16 LeNet step is too
small to split well over several cores (a second thread shortens it by 15-20%), but two runs on two cores, one
thread each, run at almost the speed of one. Each worker process runs the very same :func:`fit`
(and so :func:`train_epoch`'s plain loop) that runs in the notebook; only where it runs changes.

The processes are started with the ``spawn`` method (a fresh interpreter that imports ``helpers``), the one that
works alike in Jupyter and on Linux, macOS and Windows. The loaders' tensors (a :class:`TensorLoader`'s whole
split) reach the workers through shared memory, not copied; the model goes as a pickled copy, and the trained
weights, the :class:`History` and the loaders' random state come back as bytes when a run ends.
"""

from __future__ import annotations

import copy
import os
import pickle
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from multiprocessing.connection import Connection, wait

import torch
import torch.multiprocessing as mp
from torch import nn

from ._checks import finite_number, model_device, positive_int
from .config import progress
from .data import TensorLoader
from .training import History, check_threads, fit, not_empty

REPORT_EVERY = 100  # a worker reports its progress every this many training steps (about 0.2 s of LeNet)
STOP_WAIT_S = 2.0   # how long a worker gets to stop by itself after an error or Ctrl-C before it is terminated
MAIN_GUARD_FIX = ("fit_many was called while a worker process imports your script: put the call under "
                  "'if __name__ == \"__main__\":' (each worker imports the script first)")


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it, else all of them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def fit_many(runs: Mapping[str, tuple[nn.Module, Iterable, Iterable | None]], epochs: int, *, lr: float = 1e-3,
             threads: int | str | None = None, concurrent: bool | None = None,
             show_progress: bool | None = None) -> dict[str, History]:
    """:func:`fit` for several independent runs, each in its own worker process when the machine has the cores.

    Every run is ``fit(model, train_loader, test_loader, epochs, lr=lr, threads=threads)``: the same loop, the
    same Adam, the same numbers. With worker processes, each one gets ``cores // len(runs)`` CPU threads (one
    each for two runs on two cores) as torch's setting, which ``threads`` then acts on as in :func:`fit`. When a
    run ends its trained weights (parameters and buffers) are loaded into the caller's model (its train/eval flags
    untouched) and its loaders' ``generator`` state is advanced as an in-process run leaves it, so the next run
    over the same loader continues the same random sequence. Each run starts from the caller's global torch
    RNG state (in a worker or in this process alike), which stays as found: a run whose randomness comes from its
    loaders' own generators (:class:`TensorLoader`, a ``DataLoader(generator=...)``) gives the numbers of
    :func:`fit`, and so does one drawing from the global RNG (dropout) when it is the first.

    An error in a run stops all of them and is raised here with the run's name. Ctrl-C or any error stops every
    worker; none is left running. When worker processes cannot be used (one core, a model not on the CPU, a
    process that cannot start or cannot load a model defined in the notebook), the runs train one after the other
    in this process and a ``RuntimeWarning`` says why; a single run always trains in this process. In a script
    (not a notebook), call it under ``if __name__ == "__main__":``: each worker imports the script first (without
    the guard each worker stops there with that advice, and the runs train in this process).

    Args:
        runs: ``{name: (model, train_loader, test_loader)}``, as for :func:`fit`, each with its own train_loader
            (a test_loader may be shared); the names label the progress bars and the result.
        epochs: passes over each training loader.
        lr: learning rate of Adam.
        threads: as for :func:`fit` (``"auto"``: the faster of 1 and the run's share of the cores, per epoch).
        concurrent: None: worker processes when there are 2 cores and every model is on the CPU; True: also on
            one core; False: one run after the other in this process.
        show_progress: one bar per run (training steps of all epochs); None follows ``CNNVIS_PROGRESS``.

    Returns:
        ``{name: History}`` in the order of ``runs``.
    """
    if getattr(mp.current_process(), "_inheriting", False):  # multiprocessing's own test: a worker importing the script
        raise RuntimeError(MAIN_GUARD_FIX)
    if not isinstance(runs, Mapping) or not runs:
        raise TypeError("runs must be a non-empty dict {name: (model, train_loader, test_loader)}, e.g. "
                        "{'plain': (lenet, train_loader, test_loader)}")
    for name, run in runs.items():
        if not (isinstance(run, tuple) and len(run) == 3 and isinstance(run[0], nn.Module)):
            raise TypeError(f"run {name!r} must be a tuple (model, train_loader, test_loader), got {run!r:.80}")
        not_empty(run[1], f"the train_loader of run {name!r}")
        if run[2] is not None:
            not_empty(run[2], f"the test_loader of run {name!r}")
    shared = [name for name, run in runs.items()
              if any(run[1] is other[1] for other in runs.values() if other is not run)]
    if shared:  # in workers both would draw the same shuffles, in one process one after the other: refuse both
        raise ValueError(f"runs {shared} share one train_loader object; give each run its own (e.g. a second "
                         "TensorLoader with its own seed); a test_loader may be shared")
    epochs = positive_int(epochs, "epochs")
    lr = finite_number(lr, "lr", minimum=0)
    threads = check_threads(threads)
    if concurrent is False or len(runs) == 1:
        return _sequential(runs, epochs, lr, threads, show_progress)
    cores = cpu_cores()
    reason = (f"this machine has {cores} CPU core" if concurrent is None and cores < 2 else
              "a model is not on the CPU" if any(model_device(m).type != "cpu" for m, _, _ in runs.values()) else None)
    try:
        if reason is None:
            return _concurrent(runs, epochs, lr, threads, max(1, cores // len(runs)), show_progress)
    except _StartFailed as e:
        reason = str(e)
    _announce(reason, len(runs))
    return _sequential(runs, epochs, lr, threads, show_progress)


def _announce(reason: str, n: int) -> None:
    warnings.warn(f"fit_many: {reason}, so the {n} runs train one after the other in this process",
                  RuntimeWarning, stacklevel=3)


def _sequential(runs, epochs, lr, threads, show_progress) -> dict[str, History]:
    """The runs one after the other in this process, each from the caller's global RNG state as a worker starts
    (so the numbers do not depend on the cores); that state is left as found."""
    histories = {}
    with torch.random.fork_rng(devices=[]):
        rng_state = torch.get_rng_state()
        for name, (model, train, test) in runs.items():
            torch.set_rng_state(rng_state)
            histories[name] = fit(model, train, test, epochs, lr=lr, threads=threads, show_progress=show_progress)
    return histories


class _StartFailed(RuntimeError):
    """A worker process could not start or could not load its run (the caller trains in-process instead)."""


def _light(loader: Iterable | None) -> Iterable | None:
    """What is sent to a worker for ``loader``: a :class:`TensorLoader` without its torchvision dataset (a numpy
    copy of the split that the training never reads); its image and label tensors go through shared memory."""
    if isinstance(loader, TensorLoader):
        loader = copy.copy(loader)
        loader.dataset = None
    return loader


def _generators(*loaders: Iterable | None) -> list[torch.Tensor | None]:
    return [g.get_state() if isinstance(g := getattr(loader, "generator", None), torch.Generator) else None
            for loader in loaders]


def _concurrent(runs, epochs, lr, threads, worker_threads, show_progress) -> dict[str, History]:
    context = mp.get_context("spawn")
    rng_state = torch.get_rng_state()
    bars = {name: progress(total=epochs * len(train) if hasattr(train, "__len__") else None, desc=name,
                           enabled=show_progress) for name, (_, train, _) in runs.items()}
    workers: dict[str, mp.Process] = {}
    links: dict[str, Connection] = {}  # one pipe per worker: the run goes out, messages come back
    results: dict[str, bytes] = {}
    try:
        for name in runs:  # all workers boot (import torch and helpers) at the same time
            links[name], there = context.Pipe()
            process = context.Process(target=_worker, name=f"fit_many {name}", args=(name, there))
            try:
                process.start()
            except Exception as e:  # noqa: BLE001 - whatever stops a process from starting: train in-process
                raise _StartFailed(f"the worker process of run {name!r} could not start "
                                   f"({type(e).__name__}: {_line(e)})") from e
            finally:
                there.close()  # the worker's end: when the worker ends, this end reads EOF instead of hanging
            workers[name] = process
        for name, (model, train, test) in runs.items():
            try:  # pickled here: the loaders' tensors go to shared memory, the model as a copy
                links[name].send((pickle.dumps(model), _light(train), _light(test), epochs, lr, threads,
                                  worker_threads, rng_state))
            except Exception as e:  # noqa: BLE001 - a run that cannot be pickled or a worker that died: in-process
                if isinstance(e, OSError):  # the worker's end of the pipe is closed: did it end while starting?
                    workers[name].join(timeout=5)
                    if workers[name].exitcode is not None:
                        raise _ended(name, workers[name], False) from e
                raise _StartFailed(f"run {name!r} could not be sent to its worker process "
                                   f"({type(e).__name__}: {_line(e)})") from e
        started: set[str] = set()
        names = {link: name for name, link in links.items()}
        while len(results) < len(runs):
            for link in wait([link for link, name in names.items() if name not in results]):
                name = names[link]
                try:
                    kind, payload = link.recv()
                except (EOFError, OSError):  # the worker ended without a result
                    raise _ended(name, workers[name], name in started) from None
                if kind == "started":
                    started.add(name)
                elif kind == "steps":
                    bars[name].update(payload)
                elif kind == "unloadable":
                    raise _StartFailed(f"the worker process of run {name!r} could not load it ({payload})")
                elif kind == "error":
                    raise _worker_error(name, payload)
                else:  # "done"
                    results[name] = payload
    finally:
        for bar in bars.values():
            bar.close()
        _stop(workers.values(), links.values())
    histories = {}
    for name, (model, train, test) in runs.items():
        done = pickle.loads(results[name])
        model.load_state_dict(done["state"])
        for loader, state in zip((train, test), done["generators"], strict=True):
            if state is not None:
                loader.generator.set_state(state)
        histories[name] = done["history"]
    return histories


def _ended(name: str, process: mp.Process, started: bool) -> Exception:
    """The error for a worker that ended without a result: its start failed (it never reported), or it died
    (killed, e.g. out of memory)."""
    process.join(timeout=5)
    if not started:
        return _StartFailed(f"the worker process of run {name!r} exited with code {process.exitcode} while starting "
                            "(in a script: is fit_many under 'if __name__ == \"__main__\":'?)")
    return RuntimeError(f"the worker process of run {name!r} ended with exit code {process.exitcode} before "
                        "returning its result (killed, e.g. out of memory?); fit_many(..., concurrent=False) trains "
                        "in this process")


def _stop(processes: Iterable[mp.Process], links: Iterable[Connection]) -> None:
    """End every worker: closing its pipe makes a running one stop at its next progress report (an orderly exit,
    every ``REPORT_EVERY`` steps); one that has not ended after :data:`STOP_WAIT_S` is terminated."""
    for link in links:
        link.close()
    deadline = time.monotonic() + STOP_WAIT_S
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()
        process.close()


def _line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _worker_error(name: str, payload: tuple[bytes | None, str, str]) -> BaseException:
    """The worker's exception with the run's name in its message: the same type when it can be rebuilt so."""
    blob, kind, text = payload
    try:
        original = pickle.loads(blob) if blob is not None else None
        error = type(original)(f"run {name!r}: {text}") if original is not None else None
    except Exception:  # noqa: BLE001 - an exception type that cannot be rebuilt from one message
        error = None
    return error if isinstance(error, Exception) else RuntimeError(f"run {name!r}: {kind}: {text}")


class _Reporting:
    """``loader`` that reports every :data:`REPORT_EVERY` batches to the caller (its progress bar); when the caller
    has gone away, the report fails and the worker ends."""

    def __init__(self, loader: Iterable, link: Connection) -> None:
        self.loader, self.link = loader, link

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        steps = 0
        for batch in self.loader:
            yield batch
            steps += 1
            if steps == REPORT_EVERY:
                self.link.send(("steps", steps))
                steps = 0
        if steps:
            self.link.send(("steps", steps))


def _worker(name: str, link: Connection) -> None:
    """One run of :func:`fit_many` in a worker process: :func:`fit` as in the caller, on ``worker_threads``."""
    try:
        link.send(("started", None))
        try:
            model_blob, train, test, epochs, lr, threads, worker_threads, rng_state = link.recv()
            model = pickle.loads(model_blob)
        except Exception as e:  # noqa: BLE001 - e.g. a model class defined in a notebook: the caller trains in-process
            link.send(("unloadable", f"{type(e).__name__}: {_line(e)}"))
            return
        try:
            torch.set_num_threads(worker_threads)
            torch.set_rng_state(rng_state)
            history = fit(model, _Reporting(train, link), test, epochs, lr=lr, threads=threads, show_progress=False)
            done = {"history": history, "state": model.state_dict(), "generators": _generators(train, test)}
            link.send(("done", pickle.dumps(done)))
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the caller, which raises it
            try:
                blob = pickle.dumps(e)
            except Exception:  # noqa: BLE001 - an exception that does not pickle: its text is enough
                blob = None
            link.send(("error", (blob, type(e).__name__, _line(e))))
    except OSError:  # the caller has gone away (it ended, or stopped this worker's pipe): nothing to report to
        pass
    finally:
        link.close()
