"""Sheet 5's asked-for implementations in plain PyTorch: filter visualization, the TV loss, DeepDream.

The course's ``filters_visualization.py`` knobs keep their names: ``layer_nmbr`` (an index into VGG16's
``model.features``), ``filter_nmbr``, ``num_optim_steps``, ``lr``, ``optimizer`` and ``rand_img``. These are the
loops the sheet-5 notebook runs; ``tests/test_filtervis.py`` checks them against the package's general engine
(:func:`helpers.visualize_filter`, :func:`helpers.deep_dream`, :func:`helpers.total_variation`), which adds speed
tricks (channels-last, only the requested channels of the last convolution) and the other techniques.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import progress
from .images import normalize, valid_range

TV_EPS = 1e-12  # inside the square root of Eq. (1): its gradient at a flat patch is 0 instead of 0/0 (NaN)


def rand_img(size: int, low: float = 150, high: float = 180, *, seed: int = 0) -> torch.Tensor:
    """The start image ``rand_img``: uniform noise in ``[low, high]`` grey levels (0-255; ``low == high`` gives a
    constant image, 128 for "filled with 128"), ImageNet-normalized, ``(1, 3, size, size)``."""
    if not 0 <= low <= high <= 255:
        raise ValueError(f"rand_img needs 0 <= low <= high <= 255 (grey levels), got {low}, {high}")
    noise = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return normalize((low + (high - low) * noise) / 255)


def vgg_name(model: nn.Module, layer_nmbr: int) -> str:
    """VGG's name of ``model.features[layer_nmbr]``: ``"conv4_1"``, ``"relu4_1"`` or ``"pool4"`` (a block ends at
    each max-pool), e.g. 17 -> ``"conv4_1"`` in VGG16."""
    block, conv, name = 1, 0, ""
    for module in model.features[: layer_nmbr + 1]:
        conv += isinstance(module, nn.Conv2d)
        name = {nn.Conv2d: f"conv{block}_{conv}", nn.ReLU: f"relu{block}_{conv}",
                nn.MaxPool2d: f"pool{block}"}.get(type(module), type(module).__name__)
        if isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
    return name


def random_filters(model: nn.Module, layer_nmbr: int, n: int, seed: int = 0) -> list[int]:
    """``n`` distinct random filters of the convolution ``model.features[layer_nmbr]``, reproducible by ``seed``."""
    count = model.features[layer_nmbr].out_channels
    if not 1 <= n <= count:
        raise ValueError(f"n must be between 1 and {count} (the filters of features[{layer_nmbr}]), got {n}")
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n].tolist()


def tv_loss(img: torch.Tensor, eps: float = TV_EPS) -> torch.Tensor:
    """Eq. (1) per image: sum over i, j (and colours) of
    sqrt(|I[i+1,j] - I[i,j]|^2 + |I[i,j+1] - I[i,j]|^2 + eps). (N, C, H, W) -> (N,).
    eps keeps the gradient finite where both differences are 0 (adds <= sqrt(eps) a term)."""
    dy = img[..., 1:, :-1] - img[..., :-1, :-1]   # I[i+1, j] - I[i, j]
    dx = img[..., :-1, 1:] - img[..., :-1, :-1]   # I[i, j+1] - I[i, j]
    return (dy.square() + dx.square() + eps).sqrt().flatten(1).sum(dim=1)


def filter_activation(model: nn.Module, layer_nmbr: int, filter_nmbr: list[int],
                      images: torch.Tensor, amp: bool = False) -> torch.Tensor:
    """Mean activation of filter ``filter_nmbr[k]`` of ``model.features[layer_nmbr]`` in image
    ``k`` (one image may serve all filters): ``(N or 1, 3, H, W) -> (N,)``, without gradients."""
    with torch.no_grad(), torch.autocast(images.device.type, torch.bfloat16, enabled=amp):
        conv_output = model.features[: layer_nmbr + 1](images).float()
    conv_output = conv_output.expand(len(filter_nmbr), -1, -1, -1)
    return conv_output[torch.arange(len(filter_nmbr)), filter_nmbr].mean(dim=(-2, -1))


def visualize_filters(model: nn.Module, layer_nmbr: int, filter_nmbr: list[int],
                      rand_img: torch.Tensor, *, num_optim_steps: int = 80, lr: float = 0.1,
                      optimizer: str = "adam", tv_weight: float = 0.0, jitter: int = 0,
                      seed: int = 0, amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Image k maximizes the mean activation of filter filter_nmbr[k] of features[layer_nmbr]
    (minus tv_weight * Eq. (1) per pixel). Give the model in eval mode (VGG16's feature
    layers act the same in both); its weights get no gradients. Returns the images
    (N, 3, H, W) and the objective before each step (num_optim_steps, N)."""
    n, h, w = len(filter_nmbr), rand_img.shape[-2], rand_img.shape[-1]
    layers = model.features[: layer_nmbr + 1]          # truncated forward: up to the layer
    # the pixels are the parameters: one copy of rand_img per filter
    img = rand_img.detach().expand(n, -1, -1, -1).clone().requires_grad_(True)
    opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]([img], lr=lr)
    low, high = valid_range(img)                       # normalized pixel values 0 and 1
    gen = torch.Generator().manual_seed(seed)
    shifts = torch.randint(-jitter, jitter + 1, (num_optim_steps, 2), generator=gen)
    history = []
    for step in progress(range(num_optim_steps), leave=False):  # with a progress bar
        x = img.roll(shifts[step].tolist(), dims=(-2, -1))      # jitter: a random roll
        with torch.autocast(img.device.type, torch.bfloat16, enabled=amp):
            conv_output = layers(x)                             # (N, C, h, w)
        # image k: the mean over all positions of filter k's map
        act = conv_output[torch.arange(n), filter_nmbr].float().mean(dim=(-2, -1))
        loss = -act.sum() + tv_weight * tv_loss(img).sum() / (h * w)
        opt.zero_grad()
        loss.backward(inputs=[img])                             # gradients: pixels only
        opt.step()
        with torch.no_grad():
            img.clamp_(low, high)                               # stay a displayable picture
        history.append(act.detach())
    return img.detach(), torch.stack(history)


def dream_objective(model: nn.Module, img: torch.Tensor,
                    layer_nmbrs: list[int]) -> torch.Tensor:
    """DeepDream's objective per image, (N, 3, H, W) -> (N,): the sum over the layers
    features[i], i in layer_nmbrs (ReLU outputs), of the L2 norm of the activations over the
    square root of their number (the RMS activation: a layer's number of units does not set its
    weight; its activation scale still does)."""
    if not all(isinstance(model.features[i], nn.ReLU) for i in layer_nmbrs):
        raise ValueError("dream layers must be ReLU outputs of model.features "
                         f"(e.g. 11, 20, 27), got {layer_nmbrs}")
    total, x = 0.0, img
    for i, module in enumerate(model.features[: max(layer_nmbrs) + 1]):
        x = module(x)
        if i in layer_nmbrs:
            a = x.float().flatten(1)
            total = total + a.norm(dim=1) / a.shape[1] ** 0.5
    return total


def dream(model: nn.Module, photo: torch.Tensor, layer_nmbrs: list[int], *, steps: int = 10,
          lr: float = 0.02, tv_weight: float = 0.0, octaves: int = 3,
          octave_scale: float = 1.4, jitter: int = 16, seed: int = 0,
          amp: bool = False) -> torch.Tensor:
    """DeepDream on normalized photos (N, 3, H, W): at each scale, smallest first, `steps`
    steps on dream_objective - tv_weight * Eq. (1) per pixel, each the gradient over its
    mean |.| times lr (lr = mean change per pixel); a scale's detail is enlarged into the
    next. Returns the dreams (N, 3, H, W)."""
    low, high = valid_range(photo)
    gen = torch.Generator().manual_seed(seed)
    h, w = photo.shape[-2:]
    detail = torch.zeros_like(photo)
    for k in reversed(range(octaves)):                 # octaves: the smallest scale first
        size = (max(1, round(h / octave_scale**k)), max(1, round(w / octave_scale**k)))
        base = F.interpolate(photo, size=size, mode="bilinear", antialias=True)
        detail = F.interpolate(detail, size=size, mode="bilinear", antialias=True)
        img = (base + detail).clamp(low, high).requires_grad_(True)
        shifts = torch.zeros(steps, 2, dtype=torch.long)
        if jitter:                                     # a random roll per step but the first
            shifts = torch.randint(-jitter, jitter + 1, (steps, 2), generator=gen)
            shifts[0] = 0
        for step in progress(range(steps), leave=False):
            with torch.autocast(img.device.type, torch.bfloat16, enabled=amp):
                x = img.roll(shifts[step].tolist(), dims=(-2, -1))
                score = dream_objective(model, x, layer_nmbrs)
            loss = -score.sum() + tv_weight * tv_loss(img).sum() / (size[0] * size[1])
            (grad,) = torch.autograd.grad(loss, img)
            with torch.no_grad():                      # DeepDream's normalized step
                img -= lr * grad / (grad.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
                img.clamp_(low, high)
        detail = img.detach() - base
    return img.detach()
