"""Image priors for gradient ascent: plain, differentiable functions of the image."""

from __future__ import annotations

import torch


def _safe_pow(s: torch.Tensor, exponent: float) -> torch.Tensor:
    """``s ** exponent`` for ``s >= 0`` with a zero (sub)gradient where ``s == 0`` instead of inf/NaN."""
    positive = s > 0
    safe = torch.where(positive, s, torch.ones_like(s))  # keeps the unused branch's gradient finite
    return torch.where(positive, safe.pow(exponent), torch.zeros_like(s))


def total_variation(img: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
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

    Returns:
        Scalar tensor.
    """
    if img.dim() < 2:
        raise ValueError(f"total_variation needs an image (..., H, W), got shape {tuple(img.shape)}")
    dv = img[..., 1:, :-1] - img[..., :-1, :-1]  # I[i+1, j] - I[i, j]
    dh = img[..., :-1, 1:] - img[..., :-1, :-1]  # I[i, j+1] - I[i, j]
    return _safe_pow(dv.pow(2) + dh.pow(2), beta / 2).sum()


def l2(img: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm ``||I||^2``, summed over every element (the ``lambda * ||I||^2`` prior). Scalar."""
    return img.pow(2).sum()
