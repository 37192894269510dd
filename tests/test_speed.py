import ctypes
import platform

import pytest
import torch
from conftest import assert_same_state, model_state
from torchvision.models import resnet18

from helpers import deep_dream, visualize_filter
from helpers.speed import channels_last_weights, lean_loop, roomy_malloc

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def test_channels_last_weights_swaps_and_puts_back_the_same_tensors(tiny_cnn):
    before = model_state(tiny_cnn)
    conv = tiny_cnn.features[0]
    weight_object = conv.weight
    with pytest.raises(KeyboardInterrupt), channels_last_weights(tiny_cnn):
        assert conv.weight is weight_object  # the Parameter stays; only its data is swapped
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
        assert torch.equal(conv.weight, before["params"]["features.0.weight"])
        assert tiny_cnn.classifier[2].weight.is_contiguous()  # 2-D weights untouched
        raise KeyboardInterrupt
    assert conv.weight.is_contiguous()
    assert_same_state(before, model_state(tiny_cnn))  # values, data pointers and strides as found


def test_channels_last_weights_disabled_touches_nothing(tiny_cnn):
    before = model_state(tiny_cnn)
    with channels_last_weights(tiny_cnn, enabled=False):
        assert tiny_cnn.features[0].weight.is_contiguous()
    assert_same_state(before, model_state(tiny_cnn))


def _channels_last(model):
    return {name for name, p in model.named_parameters()
            if p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)}


def test_channels_last_weights_up_to_the_layers_read_only(tiny_cnn):
    before = model_state(tiny_cnn)
    with channels_last_weights(tiny_cnn, layers=["features.1", "<image>"]):  # the ReLU after the first conv
        assert _channels_last(tiny_cnn) == {"features.0.weight"}
    with channels_last_weights(tiny_cnn, layers=["features.3", "features.0"]):  # the deeper one counts
        assert _channels_last(tiny_cnn) == {"features.0.weight", "features.2.weight"}
    with channels_last_weights(tiny_cnn, layers=[""]):  # the logits: the whole model
        assert _channels_last(tiny_cnn) == {"features.0.weight", "features.2.weight", "features.5.weight"}
    with channels_last_weights(tiny_cnn, layers=["<image>"]):  # no layer runs
        assert _channels_last(tiny_cnn) == set()
    assert_same_state(before, model_state(tiny_cnn))


def test_channels_last_weights_up_to_a_block_takes_all_of_its_submodules():
    torch.manual_seed(0)
    resnet = resnet18(weights=None).eval()
    before = model_state(resnet)
    with channels_last_weights(resnet, layers=["layer2"]):
        names = _channels_last(resnet)
    assert {"conv1.weight", "layer1.0.conv1.weight", "layer2.0.conv1.weight", "layer2.1.conv2.weight"} <= names
    assert not any(n.startswith(("layer3", "layer4")) for n in names)
    assert_same_state(before, model_state(resnet))


def test_lean_loop_uses_channels_last_on_the_cpu_only_by_default(tiny_cnn):
    with lean_loop(tiny_cnn, device="cpu"):
        assert tiny_cnn.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    with lean_loop(tiny_cnn, channels_last=False, device="cpu"):
        assert tiny_cnn.features[0].weight.is_contiguous()
    with lean_loop(tiny_cnn, device="cuda"):  # only the decision, no CUDA needed
        assert tiny_cnn.features[0].weight.is_contiguous()


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo() -> _Mallinfo2:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    return libc.mallinfo2()


def _mmapped_blocks() -> int:
    return _mallinfo().hblks


def _larger_than_free_heap() -> int:
    """A float32 count whose block no free chunk of the heap can hold (so only mmap or growing the heap can
    serve it), and at least 80 MiB, above glibc's largest dynamic mmap threshold (32 MiB). Earlier tests leave
    freed memory in the heap; a request that fits into it is served from there whatever the settings."""
    return max(80 * 2**20, _mallinfo().fordblks + 16 * 2**20) // 4


@glibc
def test_roomy_malloc_serves_large_tensors_from_the_heap(monkeypatch):
    for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    start = _mmapped_blocks()
    big = torch.empty(_larger_than_free_heap())
    assert _mmapped_blocks() == start + 1  # outside the block: a fresh mapping
    del big
    with roomy_malloc() as active:
        assert active
        big = torch.empty(_larger_than_free_heap())
        assert _mmapped_blocks() == start  # inside: from the heap
        del big
    big = torch.empty(_larger_than_free_heap())
    assert _mmapped_blocks() == start + 1  # glibc's default is back
    del big


@glibc
def test_roomy_malloc_leaves_a_user_tuned_allocator_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    with roomy_malloc() as active:
        assert not active
    monkeypatch.delenv("MALLOC_MMAP_MAX_")
    with roomy_malloc(enabled=False) as active:
        assert not active


def test_loops_agree_with_and_without_channels_last(tiny_cnn):
    before = model_state(tiny_cnn)
    opts = dict(steps=10, start=16, lr=0.05, jitter=2)
    a = visualize_filter(tiny_cnn, "features.5", [1, 4], channels_last=True, **opts)
    b = visualize_filter(tiny_cnn, "features.5", [1, 4], channels_last=False, **opts)
    assert torch.allclose(a.image, b.image, atol=1e-4)
    image = torch.randn(1, 3, 24, 24)
    c = deep_dream(tiny_cnn, image, "features.5", steps=3, octaves=2, channels_last=True)
    d = deep_dream(tiny_cnn, image, "features.5", steps=3, octaves=2, channels_last=False)
    assert torch.allclose(c.image, d.image, atol=1e-4)
    assert not torch.equal(c.image, image)
    assert_same_state(before, model_state(tiny_cnn))
