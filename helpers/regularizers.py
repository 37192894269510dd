"""Image priors for gradient ascent: plain, differentiable functions of the image, per pixel and per image."""

from __future__ import annotations

import torch


def safe_pow(s: torch.Tensor, exponent: float) -> torch.Tensor:
    """``s ** exponent`` for ``s >= 0`` with a zero (sub)gradient where ``s == 0`` instead of inf/NaN."""
    positive = s > 0
    safe = torch.where(positive, s, torch.ones_like(s))  # keeps the unused branch's gradient finite
    return torch.where(positive, safe.pow(exponent), torch.zeros_like(s))


def _batch(img: torch.Tensor, name: str) -> torch.Tensor:
    """``(C, H, W)`` -> ``(1, C, H, W)``; ``(N, C, H, W)`` unchanged; anything else is a ``ValueError``."""
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4:
        raise ValueError(f"{name} needs images (N, C, H, W) or one (C, H, W), got shape {tuple(img.shape)}")
    return img


def total_variation(img: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Total variation per pixel: Eq. (1) of exercise sheet 5 divided by ``H*W``, one value per image.

    ``TV(I) = sum_{i,j} sqrt(|I[i+1,j] - I[i,j]|^2 + |I[i,j+1] - I[i,j]|^2)``

    summed over every pixel ``(i, j)`` that has both neighbours (``i < H-1``, ``j < W-1``) and over the channels,
    then divided by ``H*W``: a mean over pixels that does not grow with the image size. This is the quantity every
    ``tv_weight`` of the package multiplies (:func:`helpers.objectives.total_variation`, the ascents' prior) and
    the package's measure of high-frequency content, of the image as given (ImageNet-normalized images: in
    normalized units, where one grey level is about ``1 / (0.226 * 255)``). The value is exact (no epsilon);
    where both differences are zero the square root has no derivative and the gradient used is 0, its
    subgradient, so the function never produces NaN. ``beta != 1`` gives the ``TV^beta`` regularizer of Mahendran
    & Vedaldi (2015), https://arxiv.org/abs/1412.0035: the root becomes the power ``beta / 2``.

    Args:
        img: ``(N, C, H, W)`` or one image ``(C, H, W)``.
        beta: exponent; 1 is Eq. (1).

    Returns:
        ``(N,)`` tensor (``(1,)`` for one image).
    """
    img = _batch(img, "total_variation")
    dv = img[..., 1:, :-1] - img[..., :-1, :-1]  # I[i+1, j] - I[i, j]
    dh = img[..., :-1, 1:] - img[..., :-1, :-1]  # I[i, j+1] - I[i, j]
    terms = safe_pow(dv.pow(2) + dh.pow(2), beta / 2)
    return terms.flatten(1).sum(dim=1) / (img.shape[-2] * img.shape[-1])


def l2(img: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm per pixel, ``||I||^2 / (H*W)``, the squares summed over the channels and pixels of each
    image: the quantity every ``l2_weight`` multiplies (the ``lambda * ||I||^2`` prior as a mean over pixels).
    ``(N, C, H, W)`` or one ``(C, H, W)`` -> ``(N,)``."""
    img = _batch(img, "l2")
    return img.pow(2).flatten(1).sum(dim=1) / (img.shape[-2] * img.shape[-1])
