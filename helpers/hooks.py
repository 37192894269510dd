"""Layers by dotted name, forward hooks that always remove themselves, and the model-state utilities.

:class:`TruncatedForward` (a forward pass that stops right after the requested layers) and :func:`frozen_eval`
(weights frozen, eval mode, the caller's flags restored exactly) are what every gradient-ascent loop of the
package runs inside (:func:`helpers.render`); attribution uses them too. :func:`capture` is the one primitive
that turns an objective into a forward pass capturing exactly what it reads.

**A module called several times in one forward pass** (ResNet's BasicBlock runs its one ``relu`` module twice:
after ``bn1`` and after the residual sum) **stands for its first call**, everywhere in the package:
:func:`capture_activations`, :class:`TruncatedForward` (which can stop the pass there), :func:`capture`, Grad-CAM's
layer (:func:`helpers.grad_cam`) and the receptive field of :func:`helpers.layer_geometry`. The first call is the
only one a truncated pass can stop at, and the one whose window the geometry describes. To read a later call,
name a module that runs once there (``"layer4.1"``, the whole block, instead of ``"layer4.1.relu"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress

import torch
from torch import nn

from ._checks import get_layer as get_layer  # layers by dotted name: validated in the checks module
from ._checks import image_too_small, not_a_channel_layer
from ._checks import layer_names as layer_names
from .objectives import IMAGE, LOGITS, Activations, Objective
from .receptive import smallest_input, spatial_layers


@contextmanager
def capture_activations(model: nn.Module, names: str | Iterable[str], *, detach: bool = False,
                        clone: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named layers during the forward passes run inside the ``with`` block.

    >>> with capture_activations(model, ["layer1", "layer4"]) as acts:
    ...     model(x)
    >>> acts["layer4"].shape

    The hooks are removed when the block ends, also when it raises or is interrupted. A module called
    several times in one forward pass (ResNet's shared ReLUs) keeps the output of its first call (the
    package's policy, see the module docstring); each new call of ``model`` starts a new pass.

    Args:
        model: any ``nn.Module``.
        names: one dotted layer name or several (see :func:`layer_names`).
        detach: store detached tensors (no autograd graph).
        clone: store a copy, so that a following in-place op (torchvision's ``ReLU(inplace=True)``) cannot
            overwrite the recorded value; the copy stays differentiable.

    Yields:
        dict ``{name: Tensor}`` filled by each forward pass.

    Raises:
        ValueError: a name is not a layer of ``model``.
    """
    names = [names] if isinstance(names, str) else list(names)
    modules = {name: get_layer(model, name) for name in names}  # validate all before registering any
    store: dict[str, torch.Tensor] = {}
    seen: set[str] = set()  # layers already recorded in the current pass of the model
    passing = [False]  # inside a call of `model` (a submodule called directly is a pass of its own)

    def pass_starts(module: nn.Module, inputs) -> None:
        seen.clear()
        passing[0] = True

    def pass_ends(module: nn.Module, inputs, output) -> None:
        seen.clear()
        passing[0] = False

    def make_hook(name: str):
        def hook(module: nn.Module, inputs, output):
            if passing[0] and name in seen:  # a second call in the same pass: the first call's output stands
                return
            seen.add(name)
            if isinstance(output, torch.Tensor):
                if detach:
                    output = output.detach()
                store[name] = output.clone() if clone else output
            else:
                store[name] = output
        return hook

    handles = []
    try:
        handles.append(model.register_forward_pre_hook(pass_starts))
        handles.append(model.register_forward_hook(pass_ends, always_call=True))
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


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


def explain_small_image(model: nn.Module, layer: str | None, x: torch.Tensor, error: RuntimeError) -> None:
    """Raise a ValueError naming the smallest size that works when ``error`` came from an image ``x`` too small
    for ``layer`` (None: the model's last convolution/pooling layer, for a pass to the logits); else return."""
    spatial = spatial_layers(model)
    if layer is not None and layer not in spatial:  # e.g. a Linear layer: the deepest spatial layer before it
        order = {n: i for i, (n, _) in enumerate(model.named_modules())}
        before = [s for s in spatial if order[s] < order.get(layer, -1)]
        spatial, layer = (before, None) if before else (spatial, layer)
    name = layer or (spatial[-1] if spatial else None)
    if name is None or not isinstance(x, torch.Tensor) or x.dim() < 2:
        return
    try:
        smallest = smallest_input(model, name)
    except ValueError:  # no geometry to explain it with: PyTorch's own message stands
        return
    if min(x.shape[-2:]) < smallest:
        raise image_too_small(name, tuple(x.shape), smallest, logits=layer is None) from error


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
            try:
                self.model(x)
            except RuntimeError as error:
                order = {name: i for i, (name, _) in enumerate(self.model.named_modules())}
                explain_small_image(self.model, max(self.modules, key=order.__getitem__), x, error)
                raise
        missing = [name for name in self.modules if name not in self._store]
        if missing:
            raise RuntimeError(f"layer(s) {missing} never ran in the forward pass of {type(self.model).__name__}")
        out, self._store = self._store, {}
        return out


def channel_count(model: nn.Module, layer: str, *, size: int = 64) -> int:
    """Number of output channels of ``layer``: ``out_channels``/``num_features`` when the module has it,
    else the channel dimension of one tiny truncated forward pass (batch 1, ``size`` px, no gradients).

    Raises:
        ValueError: the layer gives no channel maps ``(N, C, h, w)`` (e.g. a Linear layer), naming the last conv.
    """
    module = get_layer(model, layer)
    for attr in ("out_channels", "num_features"):
        if isinstance(getattr(module, attr, None), int) and not isinstance(module, nn.BatchNorm1d):
            return getattr(module, attr)
    x = torch.zeros(1, 3, size, size, device=model_device(model))
    with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
        out = forward(x)[layer]
    if out.dim() != 4:
        raise not_a_channel_layer(model, layer, tuple(out.shape))
    return out.shape[1]


def check_channels(model: nn.Module, layer: str, channels: Sequence[int]) -> None:
    """Raise ``ValueError`` naming the valid range when a channel index is not a channel of ``layer`` (or naming
    the last convolution when ``layer`` has no channel maps at all)."""
    n = channel_count(model, layer)
    bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n]
    if bad:
        raise ValueError(f"channel(s) {bad} out of range for layer {layer!r}, which has {n} channels: "
                         f"valid indices are 0 to {n - 1}")


# ---------------------------------------------------------------- capture: the forward pass an objective reads

@contextmanager
def capture(model: nn.Module, objective: Objective, *,
            check: bool = True) -> Iterator[Callable[..., Activations]]:
    """Yield ``forward(x, image=x) -> Activations``: what ``objective`` reads, from one forward pass of ``x``.

    Only the layers up to the deepest one read run (:class:`TruncatedForward`); the model runs to its output only
    when the objective reads :data:`helpers.objectives.LOGITS` (the layers then come from
    :func:`capture_activations`); either way a module called twice stands for its first call. When the
    objective reads a few channels (at most half) of one convolution only, the pass stops at that convolution's
    input and computes just those channels.
    ``image`` is what :data:`helpers.objectives.IMAGE` holds (the untransformed image). The hooks are removed
    on exit. Call inside :func:`frozen_eval` (and the lean loop, whose weights it slices).

    Raises:
        ValueError: a layer that is not in the model (with close names), a channel out of range, a layer without
            channel maps given channels (naming the last convolution); from ``forward``, an image too small for
            the layers (with the smallest size that works, :func:`helpers.receptive.smallest_input`).
    """
    reads = objective.reads
    layers = [k for k in reads if k not in (LOGITS, IMAGE)]
    for name in layers:
        get_layer(model, name)  # ValueError with the close valid names
        if check and name in objective.channels:
            check_channels(model, name, sorted(objective.channels[name]))
    logits = LOGITS in reads
    module = get_layer(model, layers[0]) if len(layers) == 1 else None
    channels = reads[layers[0]] if len(layers) == 1 else None
    cut = (not logits and channels is not None and isinstance(module, nn.Conv2d) and module.groups == 1
           and len(channels) <= module.out_channels // 2)

    def finish(acts: Activations, x: torch.Tensor, image: torch.Tensor | None) -> Activations:
        if IMAGE in reads:
            acts[IMAGE] = x if image is None else image
        return acts

    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    deepest = None if logits or not layers else max(layers, key=order.__getitem__)

    def explained(forward: Callable[..., Activations]) -> Callable[..., Activations]:
        """``forward`` with PyTorch's error for an image too small for the layers replaced by one with the fix."""
        def run(x: torch.Tensor, image: torch.Tensor | None = None) -> Activations:
            try:
                return forward(x, image)
            except RuntimeError as error:
                explain_small_image(model, deepest, x, error)
                raise
        return run

    if not layers:
        yield explained(lambda x, image=None: finish(Activations({LOGITS: model(x)} if logits else {}), x, image))
    elif logits:  # the whole pass: the layers' outputs and the logits
        with capture_activations(model, layers) as store:
            def forward(x: torch.Tensor, image: torch.Tensor | None = None) -> Activations:
                out = model(x)
                return finish(Activations(store, **{LOGITS: out}), x, image)
            yield explained(forward)
    elif cut:  # stop at the convolution's input; compute only the channels read
        computed = tuple(sorted(channels))
        index = torch.tensor(computed, device=module.weight.device)
        weight = module.weight[index]
        bias = None if module.bias is None else module.bias[index]
        name = layers[0]
        with TruncatedForward(model, name, inputs=True) as truncated:
            def forward(x: torch.Tensor, image: torch.Tensor | None = None) -> Activations:
                out = module._conv_forward(truncated(x)[name], weight, bias)
                return finish(Activations({name: out}, computed={name: computed}), x, image)
            yield explained(forward)
    else:
        with TruncatedForward(model, layers) as truncated:
            yield explained(lambda x, image=None: finish(Activations(truncated(x)), x, image))
