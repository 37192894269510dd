"""Layers by dotted name, forward hooks that always remove themselves, and the model-state utilities.

:class:`TruncatedForward` (a forward pass that stops right after the requested layers) and :func:`frozen_eval`
(weights frozen, eval mode, the caller's flags restored exactly) are what every gradient-ascent loop of the
package runs inside (:func:`helpers.render`); attribution uses them too. :func:`capture` is the one primitive
that turns an objective into a forward pass capturing exactly what it reads.

**A module called several times in one forward pass** (ResNet's BasicBlock runs its one ``relu`` module twice:
after ``bn1`` and after the residual sum) **stands for its first call**, everywhere in the package:
:func:`capture_activations`, :class:`TruncatedForward` (which can stop the pass there), :func:`capture` (also its
``differentiable`` layer, Grad-CAM's ``A``: :func:`helpers.grad_cam`) and the receptive field of
:func:`helpers.layer_geometry`. The first call is the only one a truncated pass can stop at, and the one whose
window the geometry describes. To read a later call,
name a module that runs once there (``"layer4.1"``, the whole block, instead of ``"layer4.1.relu"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress

import torch
from torch import nn

from ._checks import frozen_eval as frozen_eval  # the model-state utilities (receptive uses them too)
from ._checks import get_layer as get_layer  # layers by dotted name: validated in the checks module
from ._checks import image_too_small, not_a_channel_layer
from ._checks import layer_names as layer_names
from ._checks import model_device as model_device
from .objectives import IMAGE, LOGITS, Activations, Objective
from .receptive import smallest_input, spatial_layers


@contextmanager
def capture_activations(model: nn.Module, names: str | Iterable[str], *, detach: bool = False,
                        clone: bool = True, differentiable: bool = False) -> Iterator[dict[str, torch.Tensor]]:
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
        differentiable: store the layer's own output and hand the rest of the pass a copy instead, so that
            ``torch.autograd.grad(score, acts[name])`` works for any score computed in the pass (Grad-CAM's
            ``dS/dA``); an in-place op after the layer changes the copy, not the stored value.

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
            if isinstance(output, torch.Tensor) and differentiable:
                store[name] = output
                return output.clone()  # the rest of the pass runs on the copy, through `output`
            if isinstance(output, torch.Tensor):
                if detach:
                    output = output.detach()
                store[name] = output.clone() if clone else output
            else:
                store[name] = output
            return None
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


def deepest_layer(model: nn.Module, layers: Iterable[str]) -> str:
    """The one of ``layers`` registered last in ``model.named_modules()`` (the one a pass reaches last when modules
    are registered in the order they run); a name that is not a module counts as the first."""
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return max(layers, key=lambda name: order.get(name, -1))


def explain_small_image(model: nn.Module, layer: str | None, x: torch.Tensor, error: RuntimeError, *,
                        fix: str | None = None) -> None:
    """Raise a ValueError naming the smallest size that works when ``error`` came from an image ``x`` too small
    for ``layer`` (None: the model's last convolution/pooling layer, for a pass to the logits); else return.
    ``fix`` is the caller's remedy with ``{n}`` for that size (default: pass an image of at least n x n px)."""
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
        raise image_too_small(name, tuple(x.shape), smallest, logits=layer is None, fix=fix) from error


class TruncatedForward:
    """Run ``model`` only until every layer in ``layers`` has produced its output, and return those outputs.

    A forward hook on each target stores its output; when the last target has fired it raises a private
    exception that ends the forward pass, so no layer after the deepest target runs. Outputs of targets
    that fire before the last one are cloned (a later in-place ReLU would otherwise overwrite them).
    With ``inputs=True`` the hooks are forward pre-hooks that store each target's (first) input instead, and
    the pass ends before the last target runs (used to apply that layer to a few channels only). ``fix`` is the
    remedy an image too small for the layers is told (:func:`explain_small_image`).
    Use as a context manager: the hooks are removed on exit, also on an exception or KeyboardInterrupt.

    >>> with TruncatedForward(model, ["features.17", "features.24"]) as forward:
    ...     acts = forward(x)    # {"features.17": (N, 512, h, w), "features.24": ...}
    """

    def __init__(self, model: nn.Module, layers: str | Iterable[str], *, inputs: bool = False,
                 fix: str | None = None) -> None:
        names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
        if not names:
            raise ValueError("give at least one layer name, e.g. 'features.28'")
        self.model = model
        self.modules = {name: get_layer(model, name) for name in names}  # ValueError with close names
        self.inputs = inputs
        self.fix = fix  # the remedy the too-small-image error names (explain_small_image)
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
                explain_small_image(self.model, deepest_layer(self.model, self.modules), x, error, fix=self.fix)
                raise
        missing = [name for name in self.modules if name not in self._store]
        if missing:
            raise RuntimeError(f"layer(s) {missing} never ran in the forward pass of {type(self.model).__name__}")
        out, self._store = self._store, {}
        return out


def static_channel_count(module: nn.Module) -> int | None:
    """``out_channels``/``num_features`` of a convolution or 2-d normalization layer; None when the module does
    not declare it (a ReLU, a pooling layer, a block): then only a forward pass tells."""
    for attr in ("out_channels", "num_features"):
        if isinstance(getattr(module, attr, None), int) and not isinstance(module, nn.BatchNorm1d):
            return getattr(module, attr)
    return None


def check_channel_range(layer: str, channels: Sequence[int], n: int) -> None:
    """``ValueError`` naming the valid range when a channel index is not one of the ``n`` channels of ``layer``."""
    bad = [c for c in channels if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n]
    if bad:
        raise ValueError(f"channel(s) {bad} out of range for layer {layer!r}, which has {n} channels: "
                         f"valid indices are 0 to {n - 1}")


def check_output_channels(model: nn.Module, layer: str, output: object, channels: Sequence[int]) -> None:
    """The channel check on a real forward pass: ``output`` of ``layer`` must be channel maps ``(N, C, h, w)``
    (else the error naming the last convolution) with every index in ``channels`` below ``C``."""
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else (type(output).__name__,)
        raise not_a_channel_layer(model, layer, shape)
    check_channel_range(layer, channels, output.shape[1])


def channel_count(model: nn.Module, layer: str, *, size: int | None = None) -> int | None:
    """Number of output channels of ``layer``: ``out_channels``/``num_features`` when the module has it, else the
    channel dimension of one truncated forward pass (batch 1, no gradients) of a ``size`` px image (None: the
    larger of 64 px and the smallest size the layer takes, :func:`helpers.receptive.smallest_input`).

    Returns None when that probe cannot run (an image of that size is too small for a model whose geometry
    cannot be folded): the channels are then checked on the first real pass (:func:`capture`).

    Raises:
        ValueError: the layer gives no channel maps ``(N, C, h, w)`` (e.g. a Linear layer), naming the last conv.
    """
    module = get_layer(model, layer)
    known = static_channel_count(module)
    if known is not None:
        return known
    if size is None:
        try:
            size = max(64, smallest_input(model, layer))
        except ValueError:  # a geometry torch.fx cannot fold: try 64 px
            size = 64
    x = torch.zeros(1, 3, size, size, device=model_device(model))
    try:
        with torch.no_grad(), frozen_eval(model), TruncatedForward(model, layer) as forward:
            out = forward(x)[layer]
    except (RuntimeError, ValueError):  # PyTorch's error, or ours for an image too small: the probe cannot tell
        return None
    if out.dim() != 4:
        raise not_a_channel_layer(model, layer, tuple(out.shape))
    return out.shape[1]


def check_channels(model: nn.Module, layer: str, channels: Sequence[int]) -> None:
    """Raise ``ValueError`` naming the valid range when a channel index is not a channel of ``layer`` (or naming
    the last convolution when ``layer`` has no channel maps at all); see :func:`channel_count` for a layer that
    does not declare its channels."""
    n = channel_count(model, layer)
    if n is not None:
        check_channel_range(layer, channels, n)


# ---------------------------------------------------------------- capture: the forward pass an objective reads

@contextmanager
def capture(model: nn.Module, objective: Objective, *, differentiable: str | None = None,
            fix: str | None = None) -> Iterator[Callable[..., Activations]]:
    """Yield ``forward(x, image=x) -> Activations``: what ``objective`` reads, from one forward pass of ``x``.

    Only the layers up to the deepest one read run (:class:`TruncatedForward`); the model runs to its output only
    when the objective reads :data:`helpers.objectives.LOGITS` (the layers then come from
    :func:`capture_activations`); either way a module called twice stands for its first call. When the
    objective reads a few channels (at most half) of one convolution only, the pass stops at that convolution's
    input and computes just those channels.
    ``image`` is what :data:`helpers.objectives.IMAGE` holds (the untransformed image). The hooks are removed
    on exit. Call inside :func:`frozen_eval` (and the lean loop, whose weights it slices).

    Layer names and the channels of layers that declare them (``out_channels``) are checked on entry; the
    channels of other layers (a ReLU, a block) on each pass, on the real image, before the objective reads them.

    Args:
        model: the network.
        objective: what the pass must capture.
        differentiable: a layer whose output is captured too (``acts[differentiable]``, absent when the pass
            stopped before it ran), as the tensor the rest of the pass is computed from, so that
            ``torch.autograd.grad(objective(acts), acts[differentiable])`` works (Grad-CAM's ``dS/dA``).
        fix: the remedy of the too-small-image error, with ``{n}`` for the smallest side that works (default:
            "pass an image of at least n x n px", for a function whose input sets the size; an ascent names its
            own size argument).

    Raises:
        ValueError: a layer that is not in the model (with close names), a channel out of range, a layer without
            channel maps given channels (naming the last convolution); from ``forward``, an image too small for
            the layers (with the smallest size that works, :func:`helpers.receptive.smallest_input`).
    """
    reads = objective.reads
    layers = [k for k in reads if k not in (LOGITS, IMAGE)]
    on_pass: dict[str, list[int]] = {}  # layers whose channels only a forward pass can check
    for name in layers:
        module = get_layer(model, name)  # ValueError with the close valid names
        if name in objective.channels:
            channels = sorted(objective.channels[name])
            count = static_channel_count(module)
            if count is None:
                on_pass[name] = channels
            else:
                check_channel_range(name, channels, count)
    if differentiable is not None:
        get_layer(model, differentiable)
    logits = LOGITS in reads
    module = get_layer(model, layers[0]) if len(layers) == 1 else None
    channels = reads[layers[0]] if len(layers) == 1 else None
    cut = (not logits and differentiable is None and channels is not None and isinstance(module, nn.Conv2d)
           and module.groups == 1 and len(channels) <= module.out_channels // 2)
    deepest = None if logits or not layers else deepest_layer(model, layers)

    with ExitStack() as stack:
        kept = (stack.enter_context(capture_activations(model, differentiable, differentiable=True))
                if differentiable is not None else {})  # registered first: later hooks see the copy
        if not layers:
            def run(x: torch.Tensor) -> Activations:
                return Activations({LOGITS: model(x)} if logits else {})
        elif logits:  # the whole pass: the layers' outputs and the logits
            store = stack.enter_context(capture_activations(model, layers))

            def run(x: torch.Tensor) -> Activations:
                out = model(x)
                return Activations(store, **{LOGITS: out})
        elif cut:  # stop at the convolution's input; compute only the channels read
            computed = tuple(sorted(channels))
            index = torch.tensor(computed, device=module.weight.device)
            weight = module.weight[index]
            bias = None if module.bias is None else module.bias[index]
            name = layers[0]
            truncated = stack.enter_context(TruncatedForward(model, name, inputs=True, fix=fix))

            def run(x: torch.Tensor) -> Activations:
                out = module._conv_forward(truncated(x)[name], weight, bias)
                return Activations({name: out}, computed={name: computed})
        else:
            truncated = stack.enter_context(TruncatedForward(model, layers, fix=fix))

            def run(x: torch.Tensor) -> Activations:
                return Activations(truncated(x))

        def forward(x: torch.Tensor, image: torch.Tensor | None = None) -> Activations:
            kept.clear()
            try:
                acts = run(x)
            except RuntimeError as error:  # an image too small for the layers: the error with the fix
                explain_small_image(model, deepest, x, error, fix=fix)
                raise
            for name, wanted in on_pass.items():
                if name in acts:  # (a layer that did not run: the objective says so)
                    check_output_channels(model, name, acts[name], wanted)
            acts.update(kept)
            if IMAGE in reads:
                acts[IMAGE] = x if image is None else image
            return acts

        yield forward
