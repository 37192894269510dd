"""Gradient ascent on the input: filter visualization and the filters a photo excites most.

The engine shared with :mod:`helpers.deepdream` lives here too: a forward pass that stops right after the
requested layers (:class:`TruncatedForward`) and a context that freezes the weights and puts the model in
eval mode for the run, restoring the caller's flags exactly afterwards (:func:`frozen_eval`).

References: Erhan et al. 2009 (activation maximization); Olah et al. 2017, "Feature Visualization",
https://distill.pub/2017/feature-visualization/; Mahendran & Vedaldi 2015 (total variation prior),
https://arxiv.org/abs/1412.0035.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import torch
from torch import nn

from .config import progress
from .hooks import get_layer
from .images import normalize, valid_range
from .regularizers import l2, total_variation
from .speed import lean_loop

OptimizerSpec = str | Callable[[list[torch.Tensor]], torch.optim.Optimizer]
InitSpec = float | tuple[float, float] | torch.Tensor

CHECK_EVERY = 16  # steps between finiteness checks (each one is a host sync)


class _StopForward(Exception):
    """Raised by our hook once every requested layer has produced its output."""


def model_device(model: nn.Module, fallback: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter or buffer (``fallback`` for a model without any)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device(fallback)


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Weights frozen (``requires_grad=False``) and every module in eval mode inside the block.

    On exit, also on an exception or KeyboardInterrupt, each parameter's ``requires_grad`` and each
    module's ``training`` flag is set back to exactly what it was (mixed flags included).
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


class TruncatedForward:
    """Run ``model`` only until every layer in ``layers`` has produced its output, and return those outputs.

    A forward hook on each target stores its output; when the last target has fired it raises a private
    exception that ends the forward pass, so no layer after the deepest target runs. Outputs of targets
    that fire before the last one are cloned (a later in-place ReLU would otherwise overwrite them).
    With ``inputs=True`` the hooks are forward pre-hooks that store each target's (first) input instead, and
    the pass ends before the last target runs (used to apply that layer to a few channels only).
    Use as a context manager: the hooks are removed on exit, also on an exception or KeyboardInterrupt.

    >>> with TruncatedForward(model, ["features.17", "features.24"]) as forward:
    ...     acts = forward(x)    # {"features.17": (N, 512, h, w), "features.24": ...}
    """

    def __init__(self, model: nn.Module, layers: str | Iterable[str], *, inputs: bool = False) -> None:
        names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
        if not names:
            raise ValueError("give at least one layer name, e.g. 'features.28'")
        self.model = model
        self.modules = {name: get_layer(model, name) for name in names}  # ValueError with close names
        self.inputs = inputs
        self._store: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, output=None):
            if self.inputs:
                output = inputs[0] if inputs else None
            if name in self._store:  # a module used twice in one pass (shared ReLU): keep its first output
                return
            if not isinstance(output, torch.Tensor):
                what = "takes" if self.inputs else "returns"
                raise TypeError(f"layer {name!r} {what} {type(output).__name__}, not a tensor; pick a layer "
                                f"whose {'input' if self.inputs else 'output'} is a single activation tensor")
            last = len(self._store) == len(self.modules) - 1
            self._store[name] = output if last else output.clone()
            if last:
                raise _StopForward
        return hook

    def __enter__(self) -> TruncatedForward:
        try:
            for name, module in self.modules.items():
                register = module.register_forward_pre_hook if self.inputs else module.register_forward_hook
                self._handles.append(register(self._hook(name)))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks (safe to call twice)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self._handles:
            raise RuntimeError("use TruncatedForward inside a `with` block")
        self._store = {}
        with suppress(_StopForward):
            self.model(x)
        missing = [name for name in self.modules if name not in self._store]
        if missing:
            raise RuntimeError(f"layer(s) {missing} never ran in the forward pass of {type(self.model).__name__}")
        out, self._store = self._store, {}
        return out


def channel_count(model: nn.Module, layer: str, *, size: int = 64) -> int:
    """Number of output channels of ``layer``: ``out_channels``/``num_features`` when the module has it,
    else the channel dimension of one tiny truncated forward pass (batch 1, ``size`` px, no gradients)."""
    module = get_layer(model, layer)
    for attr in ("out_channels", "num_features"):
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    x = torch.zeros(1, 3, size, size, device=model_device(model))
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        return forward(x)[layer].shape[1]


def check_channels(model: nn.Module, layer: str, channels: Sequence[int]) -> None:
    """Raise ``ValueError`` naming the valid range when a channel index is not a channel of ``layer``."""
    n = channel_count(model, layer)
    bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n]
    if bad:
        raise ValueError(f"channel(s) {bad} out of range for layer {layer!r}, which has {n} channels: "
                         f"valid indices are 0 to {n - 1}")


def check_finite(img: torch.Tensor, step: int, lr: float) -> None:
    """Stop with a clear error when the optimized image holds NaN or inf (one host sync)."""
    if not bool(torch.isfinite(img).all()):
        raise FloatingPointError(
            f"the image became NaN/inf by step {step} (lr={lr:g}): the ascent diverged. Lower the learning "
            "rate, add an l2_weight or clamp=True, and try again.")


def image_step(opt: torch.optim.Optimizer, loss: torch.Tensor, img: torch.Tensor, step: int, lr: float,
               bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
               after: Callable[[torch.Tensor], None] | None = None) -> None:
    """One update of an optimized image: backward of ``loss``, optimizer step, then (without autograd) the
    image operation ``after(img)`` if given, clamping to ``bounds = (low, high)`` if given, and a NaN/inf check
    every ``CHECK_EVERY`` steps (the only host sync)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        if after is not None:
            after(img)
        if bounds is not None:
            img.clamp_(*bounds)
    if (step + 1) % CHECK_EVERY == 0:
        check_finite(img, step + 1, lr)


def jitter_shifts(steps: int, jitter: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """``steps`` random ``(dy, dx)`` rolls in ``[-jitter, jitter]``, drawn on the CPU (no device sync)."""
    if jitter <= 0:
        return [(0, 0)] * steps
    return [tuple(s) for s in torch.randint(-jitter, jitter + 1, (steps, 2), generator=generator).tolist()]


def make_optimizer(optimizer: OptimizerSpec, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """``"adam"`` or ``"sgd"`` with learning rate ``lr``, or a factory ``params -> Optimizer`` (``lr`` unused)."""
    if callable(optimizer):
        return optimizer(params)
    name = str(optimizer).lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or a factory params -> Optimizer")


def _init_image(init: InitSpec, n: int, size: tuple[int, int], generator: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """The start image ``(n, 3, H, W)`` in normalized space; one image shared by all ``n`` channels."""
    if isinstance(init, torch.Tensor):
        if init.dim() == 3:
            init = init.unsqueeze(0)
        if init.dim() != 4 or init.shape[1] != 3 or init.shape[0] not in (1, n):
            raise ValueError(f"an init image must be (1, 3, H, W) or ({n}, 3, H, W), got {tuple(init.shape)}")
        return init.detach().to(device=device, dtype=torch.float32).expand(n, -1, -1, -1).clone()
    h, w = size
    if isinstance(init, int | float):
        if not 0.0 <= init <= 1.0:
            raise ValueError(f"a constant init is a pixel value in [0, 1] (128/255 for 'filled with 128'), got {init}")
        pixels = torch.full((1, 3, h, w), float(init))
    else:
        low, high = init
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"init=(low, high) needs 0 <= low <= high <= 1 (pixel values), got {init}")
        pixels = low + (high - low) * torch.rand(1, 3, h, w, generator=generator)
    return normalize(pixels).to(device).expand(n, -1, -1, -1).clone()


@dataclass
class AscentResult:
    """What :func:`visualize_filter` returns (all tensors detached)."""

    image: torch.Tensor  # (N, 3, H, W) optimized images, ImageNet-normalized like load_image; one per channel
    history: torch.Tensor  # (steps, N) objective (mean activation) of the jittered input before each update, CPU
    objective: torch.Tensor  # (N,) objective of the returned images (no jitter), CPU
    layer: str  # dotted layer name
    channels: list[int]  # the channel of each image


def visualize_filter(model: nn.Module, layer: str, channel: int | Sequence[int], *, steps: int = 100,
                     lr: float = 0.1, optimizer: OptimizerSpec = "adam", init: InitSpec = (150 / 255, 180 / 255),
                     size: int | tuple[int, int] = 128, tv_weight: float = 0.0, l2_weight: float = 0.0,
                     jitter: int = 0, clamp: bool = False, seed: int = 0, amp: bool = False,
                     channels_last: bool | None = None, show_progress: bool | None = None) -> AscentResult:
    """Find input images that maximize the mean activation of one or several channels of a layer.

    Gradient ascent on the pixels (activation maximization). For each channel ``c`` the loss minimized is

        ``-mean_{y,x} A[c, y, x] + tv_weight * TV(I) / (H*W) + l2_weight * ||I||^2 / (H*W)``

    with ``A`` the output of ``layer`` and ``TV`` Eq. (1) of sheet 5 (:func:`helpers.total_variation`); both
    priors are per pixel, so their weights do not depend on ``size``. Several channels are optimized as one
    batch, one image per channel; all images start from the same init image and share the jitter, so a
    channel's result does not depend on which channels share its batch. Only the layers up to ``layer`` run
    and no weight gradients are built; when ``layer`` is a convolution, only its requested channels are
    computed. The model's flags, weights and ``.grad`` are left as found.

    Args:
        model: a CNN taking ImageNet-normalized ``(N, 3, H, W)`` images.
        layer: dotted module name, e.g. ``"features.28"`` (see :func:`helpers.layer_names`).
        channel: a channel index, or a sequence of them (one image each).
        steps: number of optimizer steps.
        lr: learning rate of a named optimizer, in normalized units (1 pixel step of 1.0 is about 4.4 units).
        optimizer: ``"adam"``, ``"sgd"``, or a factory ``params -> torch.optim.Optimizer``.
        init: the start image in pixel units before normalization: a float ``v`` fills it with ``v``
            (``128 / 255`` for the sheet's "image filled with 128"), a pair ``(low, high)`` draws uniform
            noise in ``[low, high]`` (default ``(150/255, 180/255)``, as in the course code), a tensor
            ``(1 or N, 3, H, W)`` in normalized space starts from that image (``size`` is then ignored).
        size: side (or ``(H, W)``) of the image.
        tv_weight: weight of the total-variation prior (0 = off).
        l2_weight: weight of the squared-L2 prior (0 = off).
        jitter: roll the image by a random shift in ``[-jitter, jitter]`` px before each forward pass.
        clamp: clamp the pixels to the displayable range (:func:`helpers.valid_range`) after each step.
        seed: seeds the init noise and the jitter (a local generator; the global RNG is untouched).
        amp: run the network in bfloat16 autocast (faster on CPUs with bf16 support; the image stays float32).
        channels_last: run the convolutions in channels-last memory format (:mod:`helpers.speed`); None: on
            the CPU yes, on a GPU no. The same arithmetic in another order: results agree to float rounding.
        show_progress: force the progress bar on/off; None follows ``CNNVIS_PROGRESS``.

    Returns:
        :class:`AscentResult` with ``image`` ``(N, 3, H, W)`` on the model's device, ``history``
        ``(steps, N)`` and ``objective`` ``(N,)``.

    Raises:
        ValueError: unknown layer (with close names), channel out of range (with the valid range), bad init.
        FloatingPointError: the image became NaN/inf (learning rate too high).
    """
    channels = [channel] if isinstance(channel, int) else list(channel)
    if not channels:
        raise ValueError("give at least one channel")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_channels(model, layer, channels)  # also validates the layer name
    device = model_device(model)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    generator = torch.Generator().manual_seed(seed)
    img = _init_image(init, len(channels), hw, generator, device).requires_grad_(True)
    h, w = img.shape[-2:]
    shifts = jitter_shifts(steps, jitter, generator)
    index = torch.tensor(channels, device=device)
    rows = torch.arange(len(channels), device=device)
    low, high = valid_range(img)
    history = torch.empty(steps, len(channels), device=device)
    opt = make_optimizer(optimizer, [img], lr)

    module = get_layer(model, layer)
    # a convolution as target: stop at its input and compute only the requested output channels (a conv with
    # weight[index] gives image i all N channels, N <= C/2 of them; the diagonal is what each image scores)
    cut = isinstance(module, nn.Conv2d) and module.groups == 1 and len(channels) <= module.out_channels // 2
    columns = rows if cut else index

    def objective(x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N,): image i scores channel i
        acts = forward(x)[layer]
        if cut:
            acts = module._conv_forward(acts, weight, bias)
        return acts[rows, columns].float().mean(dim=(-2, -1))

    with (torch.enable_grad(), frozen_eval(model), lean_loop(model, channels_last, device),
          TruncatedForward(model, layer, inputs=cut) as forward):
        if cut:
            weight = module.weight[index]
            bias = None if module.bias is None else module.bias[index]
        for step in progress(range(steps), desc=f"{layer} x{len(channels)}", enabled=show_progress):
            x = torch.roll(img, shifts=shifts[step], dims=(-2, -1)) if jitter > 0 else img
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                score = objective(x)
            loss = -score.sum()
            if tv_weight:
                loss = loss + tv_weight * total_variation(img) / (h * w)
            if l2_weight:
                loss = loss + l2_weight * l2(img) / (h * w)
            image_step(opt, loss, img, step, lr, (low, high) if clamp else None)
            history[step] = score.detach()
        check_finite(img, steps, lr)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            final = objective(img)
    return AscentResult(image=img.detach(), history=history.cpu(), objective=final.float().cpu(),
                        layer=layer, channels=channels)


def top_filters(model: nn.Module, image: torch.Tensor, layer: str, k: int = 10, *,
                reduce: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` channels of ``layer`` that ``image`` activates most.

    Each channel is scored by its mean activation over all spatial positions (``reduce="max"``: its largest
    activation), computed from the whole activation tensor of one truncated forward pass, without
    gradients. Channels are ranked by score, highest first.

    Args:
        model: a CNN taking ImageNet-normalized images.
        image: ``(N, 3, H, W)`` normalized images (e.g. from :func:`helpers.load_image`); not modified.
        layer: dotted module name.
        k: how many channels.
        reduce: ``"mean"`` or ``"max"`` over space.

    Returns:
        ``(channels, scores)``, both ``(N, k)``: long indices and float scores, on the image's device.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (N, 3, H, W), got {tuple(image.shape)}")
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        acts = forward(image.to(model_device(model)))[layer].float()
    if not 1 <= k <= acts.shape[1]:
        raise ValueError(f"k must be between 1 and {acts.shape[1]} (the channels of {layer!r}), got {k}")
    scores = acts.mean(dim=(-2, -1)) if reduce == "mean" else acts.amax(dim=(-2, -1))
    top = scores.topk(k, dim=1)
    return top.indices.to(image.device), top.values.to(image.device)
