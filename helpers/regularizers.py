"""Image priors for gradient ascent: plain, differentiable functions of the image."""

from __future__ import annotations

import torch

from .images import denormalize


def safe_pow(s: torch.Tensor, exponent: float) -> torch.Tensor:
    """``s ** exponent`` for ``s >= 0`` with a zero (sub)gradient where ``s == 0`` instead of inf/NaN."""
    positive = s > 0
    safe = torch.where(positive, s, torch.ones_like(s))  # keeps the unused branch's gradient finite
    return torch.where(positive, safe.pow(exponent), torch.zeros_like(s))


def total_variation(img: torch.Tensor, beta: float = 1.0, *, per_image: bool = False) -> torch.Tensor:
    """Total variation, Eq. (1) of exercise sheet 5 (isotropic, summed).

    ``TV(I) = sum_{i,j} sqrt(|I[i+1,j] - I[i,j]|^2 + |I[i,j+1] - I[i,j]|^2)``

    summed over every pixel ``(i, j)`` that has both neighbours (``i < H-1``, ``j < W-1``), over channels
    and over the batch. The value is exact (no epsilon); where both differences are zero the square root
    has no derivative and the gradient used is 0, its subgradient, so the function is differentiable
    everywhere in practice and never produces NaN. ``beta != 1`` gives the ``TV^beta`` regularizer of
    Mahendran & Vedaldi (2015), https://arxiv.org/abs/1412.0035: the root becomes the power ``beta / 2``.

    Args:
        img: ``(N, C, H, W)`` or ``(C, H, W)``.
        beta: exponent; 1 is Eq. (1).
        per_image: sum each image ``(C, H, W)`` of the batch on its own.

    Returns:
        Scalar tensor, or ``(N,)`` with ``per_image=True``.
    """
    if img.dim() < 2:
        raise ValueError(f"total_variation needs an image (..., H, W), got shape {tuple(img.shape)}")
    dv = img[..., 1:, :-1] - img[..., :-1, :-1]  # I[i+1, j] - I[i, j]
    dh = img[..., :-1, 1:] - img[..., :-1, :-1]  # I[i, j+1] - I[i, j]
    terms = safe_pow(dv.pow(2) + dh.pow(2), beta / 2)
    return terms.flatten(1).sum(dim=1) if per_image else terms.sum()


def tv_per_pixel(image: torch.Tensor) -> torch.Tensor:
    """High-frequency content of ImageNet-normalized images: Eq. (1)'s term per pixel, in pixel units.

    The project's one measure of "TV per pixel": the image is de-normalized to displayable pixel values in
    ``[0, 1]`` and the term ``sqrt(|I[i+1,j] - I[i,j]|^2 + |I[i,j+1] - I[i,j]|^2)`` of Eq. (1) is averaged over
    the three channels and every pixel that has both neighbours. A flat image gives 0, a one-pixel black-white
    checkerboard ``sqrt(2)``; uniform noise in ``[a, b]`` about ``0.52 * (b - a)``.

    Args:
        image: ``(N, 3, H, W)`` normalized images (like :func:`helpers.load_image`), ``H, W >= 2``.

    Returns:
        ``(N,)`` tensor, one value per image.
    """
    if image.dim() != 4 or image.shape[1] != 3 or min(image.shape[-2:]) < 2:
        raise ValueError(f"tv_per_pixel needs normalized images (N, 3, H, W) with H, W >= 2, got {tuple(image.shape)}")
    pixels = denormalize(image.detach().float())
    h, w = image.shape[-2:]
    return total_variation(pixels, per_image=True) / (3 * (h - 1) * (w - 1))


def l2(img: torch.Tensor, *, per_image: bool = False) -> torch.Tensor:
    """Squared L2 norm ``||I||^2``, summed over every element (the ``lambda * ||I||^2`` prior). Scalar, or ``(N,)``
    (one sum per image of the batch) with ``per_image=True``."""
    squares = img.pow(2)
    return squares.flatten(1).sum(dim=1) if per_image else squares.sum()
