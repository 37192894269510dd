"""What makes the gradient-ascent loops fast on a laptop CPU: layout and allocation that leave the results as they
are, and an opt-in bfloat16 autocast that changes the rounding.

Every visualization is a loop of forward+backward passes through a CNN, compute-bound on the convolutions.
Besides running only the layers needed and building no weight gradients (:mod:`helpers.toolbox.ascent`), three
things help on a CPU:

- **channels-last memory format** (:func:`channels_last_weights`): oneDNN's convolutions work in NHWC; with
  NCHW weights PyTorch reorders every weight on every call, forward and backward. The weights are swapped
  for channels-last copies for the duration of a loop and the original tensors put back afterwards.
- **an allocator that keeps large blocks** (:func:`roomy_malloc`): glibc maps every block above its mmap
  threshold (at most 32 MiB) freshly from the kernel and unmaps it on free, so a 512 px activation is
  page-faulted in again on every step. Inside the block, freed memory stays in the heap for reuse.
- **bfloat16 autocast** (:func:`fast_bf16` tells whether the hardware runs it natively): an opt-in
  (``amp=True``), because it changes the arithmetic; the pictures stay the same.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .config import default_device

# glibc's mallopt parameters and their documented defaults (mallopt(3))
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_ROOMY_TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap inside the block
_roomy_depth = 0  # how many roomy_malloc blocks are open (only the outermost one sets and resets glibc)
_ALLOCATOR_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def fast_bf16(device: torch.device | str | None = None) -> bool:
    """True when bfloat16 autocast (``amp=True``) is natively fast on ``device`` (default: the default device):
    a CUDA GPU with bf16 support, or a CPU with the AVX512-BF16 or AMX-BF16 instructions (Linux)."""
    device = torch.device(default_device() if device is None else device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def channels_last_default(device: torch.device | str) -> bool:
    """Whether the loops use channels-last by default on ``device``: on the CPU (oneDNN), yes; on a GPU in
    float32 the gain is small or negative, so no."""
    return torch.device(device).type == "cpu" and torch.backends.mkldnn.is_available()


def modules_up_to(model: nn.Module, layers: Iterable[str]) -> list[nn.Module]:
    """The modules of ``model`` registered up to the last of ``layers`` in ``named_modules()`` order, with all
    of that layer's submodules: the ones a pass truncated after ``layers`` runs when modules are registered in
    the order they are called (VGG, ResNet and the torchvision classifiers are). The whole model when
    ``layers`` holds ``""`` (the model itself, i.e. its logits). Names that are not modules are ignored."""
    named = list(model.named_modules())
    wanted = set(layers)
    if "" in wanted:
        return [module for _, module in named]
    positions = [i for i, (name, _) in enumerate(named) if name in wanted]
    if not positions:
        return []
    last = positions[-1]
    deepest = named[last][0] + "."
    end = last + 1
    while end < len(named) and named[end][0].startswith(deepest):
        end += 1
    return [module for _, module in named[:end]]


@contextmanager
def channels_last_weights(model: nn.Module, enabled: bool = True,
                          layers: Iterable[str] | None = None) -> Iterator[nn.Module]:
    """Inside the block every 4-D parameter of ``model`` holds a channels-last copy of its values.

    The parameter objects stay the same (optimizers and hooks keep working); only ``.data`` is swapped, and on
    exit (also on an exception or KeyboardInterrupt) each parameter gets back its original tensor, so the
    model's values, strides and storage are exactly as found. Changes made to the weights inside the block
    are not carried back: use it around loops that do not train the weights. Values are identical; only the
    order in which a convolution adds up its terms can change, at the level of float rounding.
    With ``layers`` (the layers a truncated pass reads), only the parameters of :func:`modules_up_to` them are
    copied: VGG16 up to ``features.17`` copies 2.3 of its 14.7 million conv weights. A module called after
    them but registered before would run on its NCHW weight: slower, the same values.
    """
    swapped: list[tuple[nn.Parameter, torch.Tensor]] = []
    try:
        if enabled:
            modules = [model] if layers is None else modules_up_to(model, layers)
            params = [p for m in modules for p in m.parameters(recurse=layers is None)]
            for p in params:
                if p.dim() == 4 and not p.is_contiguous(memory_format=torch.channels_last):
                    original = p.data
                    p.data = original.contiguous(memory_format=torch.channels_last)
                    swapped.append((p, original))
        yield model
    finally:
        for p, original in swapped:
            p.data = original


def _glibc_mallopt():
    """glibc's ``mallopt`` and ``malloc_trim``, or None on another C library or when the user tuned the
    allocator already (``MALLOC_*`` variables, glibc tunables, or a preloaded jemalloc/tcmalloc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if any(name in os.environ for name in _ALLOCATOR_ENV) or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None


@contextmanager
def roomy_malloc(enabled: bool = True) -> Iterator[bool]:
    """Inside the block, glibc serves large blocks from its heap and keeps freed ones for reuse.

    The effect of ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<1 GiB>``, set with ``mallopt`` for the block
    only: the repeated allocation of the same large activations no longer maps fresh pages (page faults
    and zeroing) on every step. On exit glibc's defaults are set back and the freed heap is returned to the
    system (``malloc_trim``); a block nested in another leaves that to the outermost one. Does nothing (yields
    False) on other platforms, other C libraries, or when the user configured the allocator through the
    environment or ``LD_PRELOAD``.
    """
    global _roomy_depth
    calls = _glibc_mallopt() if enabled else None
    if calls is None:
        yield False
        return
    mallopt, malloc_trim = calls
    if not _roomy_depth:
        mallopt(_M_MMAP_MAX, 0)
        mallopt(_M_TRIM_THRESHOLD, _ROOMY_TRIM_THRESHOLD)
    _roomy_depth += 1
    try:
        yield True
    finally:
        _roomy_depth -= 1
        if not _roomy_depth:  # a nested block (DeepDream's octaves) leaves the settings to the outermost one
            mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
            mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            malloc_trim(0)


@contextmanager
def lean_loop(model: nn.Module, channels_last: bool | None = None, device: torch.device | str = "cpu",
              layers: Iterable[str] | None = None) -> Iterator[nn.Module]:
    """:func:`channels_last_weights` (``None``: :func:`channels_last_default` for ``device``; ``layers``: only
    the modules up to them) and :func:`roomy_malloc` together: what every gradient-ascent loop of the package
    runs inside."""
    if channels_last is None:
        channels_last = channels_last_default(device)
    with channels_last_weights(model, channels_last, layers), roomy_malloc():
        yield model
