"""Images in and out: loading any common image as a normalized tensor, and back to a displayable array.

ImageNet's mean and standard deviation live here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from .config import DATA_DIR, default_device

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageSource = str | os.PathLike | Image.Image | np.ndarray


def _stats(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, dtype=like.dtype, device=like.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=like.dtype, device=like.device).view(3, 1, 1)
    return mean, std


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Map pixels in [0, 1] to the ImageNet-normalized space. Shape ``(..., 3, H, W)`` is kept."""
    mean, std = _stats(x)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`normalize` (no clipping). Shape ``(..., 3, H, W)`` is kept."""
    mean, std = _stats(x)
    return x * std + mean


def valid_range(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel bounds ``(low, high)`` of the normalized space, shaped ``(3, 1, 1)``, that map to [0, 1].

    Use them to clamp an optimized image so it stays a displayable picture.
    """
    mean, std = _stats(like)
    return (0 - mean) / std, (1 - mean) / std


def _pil_to_float(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> float32 array ``(H, W, 3)`` in [0, 1]; transparency is composited on white."""
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit (or 32-bit integer) grayscale: convert("RGB") would clip everything above 255 to white.
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if img.mode == "F":
        gray = np.asarray(img, dtype=np.float32)
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _array_to_float(arr: np.ndarray) -> np.ndarray:
    """A numpy image (``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``; uint8, uint16 or float in [0, 1]) -> float RGB."""
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image array of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        check_float_pixels(arr)
        out = np.clip(arr.astype(np.float32), 0.0, 1.0)  # only rounding overshoot is left to clip
    else:
        raise ValueError(f"unsupported image array dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
    if out.shape[2] == 4:  # composite on white, like PIL images with transparency
        out = out[..., :3] * out[..., 3:] + (1.0 - out[..., 3:])
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return out


FLOAT_SLACK = 1e-3  # how far a float image may overshoot [0, 1] (resampling, rounding) and still be clipped


def check_float_pixels(arr: np.ndarray) -> None:
    """``ValueError`` with the fix when a float image array is not pixels in [0, 1] (up to :data:`FLOAT_SLACK`):
    NaN/inf, 0-255 values (clipping would make them white) or normalized values."""
    if not np.isfinite(arr).all():
        raise ValueError(f"the image array holds {int((~np.isfinite(arr)).sum())} NaN/inf value(s): pass finite "
                         "pixels (np.nan_to_num repairs them)")
    low, high = float(arr.min()), float(arr.max())
    if low >= -FLOAT_SLACK and high <= 1 + FLOAT_SLACK:
        return
    fix = ("it looks like 0-255 values: pass arr / 255 or arr.astype(np.uint8)" if low >= -FLOAT_SLACK and high <= 255
           else "rescale it to [0, 1] (an ImageNet-normalized tensor is already what the techniques take)")
    raise ValueError(f"a float image array must hold pixels in [0, 1], got values in [{low:g}, {high:g}]: {fix}")


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not an image file")
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image file (PIL cannot identify its format)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: image data is truncated or corrupt ({e})") from e


FITS = ("crop", "pad")


def load_image(source: ImageSource, size: int | None = 224, *, fit: str = "crop",
               device: torch.device | str | None = None) -> torch.Tensor:
    """Load an image as an ImageNet-normalized batch of one.

    With ``fit="crop"`` the shorter side is resized to ``size`` (antialiased) and the centre cropped to
    ``size x size``, the usual ImageNet preprocessing, which cuts off the ends of the longer side. With
    ``fit="pad"`` the longer side is resized to ``size`` and the picture is centred on a ``size x size``
    square whose border has the ImageNet mean colour (zero after normalization): nothing is cut away.
    EXIF orientation is applied; RGBA, LA, P, CMYK, grayscale and 16-bit images become RGB (transparency
    composited on white, 16-bit scaled by 1/65535).

    Args:
        source: a path, a PIL image, or a numpy array ``(H, W[, 3|4])`` (uint8, uint16 or float in [0, 1]),
            e.g. ``skimage.data.chelsea()``.
        size: side of the square output; None keeps the original size and aspect ratio.
        fit: ``"crop"`` (centre crop) or ``"pad"`` (letterbox, the whole picture kept).
        device: where the tensor goes; default CUDA if available, else CPU.

    Returns:
        Tensor ``(1, 3, S, S)`` (or ``(1, 3, H, W)`` with ``size=None``), float32, normalized.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not an image, is truncated, or the array has an unsupported shape/dtype or float
            values outside [0, 1] (0-255 floats: divide by 255).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be 'crop' (centre crop) or 'pad' (letterbox, nothing cut away), got {fit!r}")
    if isinstance(source, np.ndarray):
        arr = _array_to_float(source)
    elif isinstance(source, Image.Image):
        arr = _pil_to_float(ImageOps.exif_transpose(source))
    elif isinstance(source, str | os.PathLike):
        arr = _pil_to_float(_open(Path(source).expanduser()))
    else:
        raise TypeError(f"load_image takes a path, a PIL image or a numpy array, not {type(source).__name__}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    if size is not None:
        size = int(size)
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels or None, got {size}")
        if fit == "crop":
            x = TF.center_crop(TF.resize(x, [size], antialias=True), [size, size])
        else:
            h, w = x.shape[1:]
            scale = size / max(h, w)
            x = TF.resize(x, [max(1, round(h * scale)), max(1, round(w * scale))], antialias=True)
        x = x.clamp(0.0, 1.0)  # antialiased resampling can overshoot slightly
    x = normalize(x)
    if size is not None and fit == "pad":
        h, w = x.shape[1:]
        top, left = (size - h) // 2, (size - w) // 2
        x = torch.nn.functional.pad(x, (left, size - w - left, top, size - h - top))  # zero = the mean colour
    return x.unsqueeze(0).to(default_device() if device is None else device)


def display_pixels(x: torch.Tensor | np.ndarray, *, normalized: bool = True) -> torch.Tensor:
    """Images ``(..., C, H, W)`` -> display pixels: a float CPU tensor of the same shape, clipped to [0, 1].

    ``normalized=True`` undoes the ImageNet normalization first (``C`` must be 3). Any device; may require grad.
    """
    t = torch.as_tensor(x).detach().float().cpu()
    return (denormalize(t) if normalized else t).clamp(0.0, 1.0)


def to_image(x: torch.Tensor | np.ndarray, *, normalized: bool = True) -> np.ndarray:
    """One image -> what ``imshow`` takes: the package's one display conversion (every plot goes through it).

    Args:
        x: ``(3, H, W)`` or ``(1, 3, H, W)`` tensor or array, any device, may require grad; ImageNet-normalized
            (the normalization is undone), or with ``normalized=False`` already in display space [0, 1], where
            a grey ``(1, H, W)`` and channel-last ``(H, W, 3)`` / ``(H, W, 1)`` are accepted too.
        normalized: whether ``x`` is ImageNet-normalized.

    Returns:
        float32 array ``(H, W, 3)`` in [0, 1] (values outside the displayable range are clipped).
    """
    t = torch.as_tensor(x)
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
        t = t.permute(2, 0, 1)  # channel-last -> channel-first
    if t.dim() != 3 or t.shape[0] not in ((3,) if normalized else (1, 3)):
        space = "a normalized image (3, H, W)" if normalized else "an image (3, H, W) or (H, W, 3)"
        raise ValueError(f"to_image expects {space} or a batch of one, got shape {tuple(t.shape)}; pass x[i] for "
                         "one image of a batch")
    return display_pixels(t.expand(3, *t.shape[1:]), normalized=normalized).permute(1, 2, 0).numpy()


# Real photographs that ship with scikit-image: the offline default wherever the sheets want photos.
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def sample_photo(name: str) -> np.ndarray:
    """A photograph from ``skimage.data`` (one of ``SAMPLE_PHOTOS``) as a uint8 array ``(H, W, 3)``."""
    from skimage import data

    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose one of {', '.join(SAMPLE_PHOTOS)}")
    return data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()


def course_photo(filename: str, fallback: str = "chelsea", size: int | None = 224, *, fit: str = "crop",
                 folder: str | os.PathLike | None = None,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, str]:
    """The course's photo ``data/<filename>`` when present, else a ``skimage.data`` photo, loaded with
    :func:`load_image` (``fit="pad"`` keeps the whole picture of a non-square photo).

    Returns:
        ``(image (1, 3, S, S), source)`` where ``source`` says which file was used and, for the fallback,
        that it is a stand-in (print it under the figure).
    """
    path = Path(DATA_DIR if folder is None else folder) / filename
    if path.exists():
        return load_image(path, size, fit=fit, device=device), str(path.name)
    note = f"skimage.data.{fallback} (stand-in: {filename} is not in {path.parent})"
    return load_image(sample_photo(fallback), size, fit=fit, device=device), note


def photo_set(k: int = 5, folder: str | os.PathLike | None = None, size: int | None = 224, *,
              device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """``k`` photographs: the image files in ``folder`` (default ``data/photos/``, sorted by name) when it
    has at least ``k``, else the ``skimage.data`` photos ``SAMPLE_PHOTOS``. Keys are file or photo names."""
    folder = Path(DATA_DIR / "photos" if folder is None else folder)
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in PHOTO_SUFFIXES) if folder.is_dir() else []
    if len(files) >= k:
        return {p.name: load_image(p, size, device=device) for p in files[:k]}
    if k > len(SAMPLE_PHOTOS):
        raise ValueError(f"only {len(SAMPLE_PHOTOS)} sample photos ship offline; put {k} photos into {folder}")
    return {name: load_image(sample_photo(name), size, device=device) for name in SAMPLE_PHOTOS[:k]}


# --- a set of images: a folder, a batch tensor, a list of tensors, or a dataset ------------------------------

ImageCollection = str | os.PathLike | torch.Tensor | Sequence[torch.Tensor] | torch.utils.data.Dataset


def rgb_fix(channels: int, *, batched: bool = True) -> str:
    """How to turn an image with ``channels`` channels into the RGB one the models take (``x`` a batch
    ``(N, C, H, W)``, or one ``(C, H, W)`` image with ``batched=False``)."""
    grey, alpha = ("x.expand(-1, 3, -1, -1)", "x[:, :3]") if batched else ("x.expand(3, -1, -1)", "x[:3]")
    return {1: f"a grey image: repeat it as RGB with {grey}",
            4: f"an RGBA image: drop the alpha channel with {alpha} (helpers.load_image composites it on white)",
            }.get(channels, "load it with helpers.load_image, which always gives 3 channels")


NORMALIZE_FIX = "helpers.normalize(x.float() / 255) for 0-255 pixels, helpers.normalize(x) for pixels in [0, 1]"
"""How to turn raw pixels into the ImageNet-normalized float images every technique takes."""


def image_values(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """``image`` when it holds real pixel values: a floating-point tensor with data (not on the ``meta`` device),
    every value finite; else a one-line ``ValueError`` naming ``name`` and the fix (one host sync)."""
    if image.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor (a shape without data): pass real pixels, e.g. from "
                         "helpers.load_image, or move the model and image off the meta device first")
    if not image.is_floating_point():
        raise ValueError(f"{name} has dtype {image.dtype}, but images are ImageNet-normalized floats: convert it "
                         f"with {NORMALIZE_FIX}")
    finite = torch.isfinite(image)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} holds {bad} NaN/inf value(s) of {image.numel()}: pass finite pixels (reload the "
                         "image with helpers.load_image, or repair it with torch.nan_to_num)")
    return image


class LazyImages:
    """Random access to normalized images ``(3, H, W)`` from any :data:`ImageCollection`, loaded lazily; a
    single ``(3, H, W)`` tensor is a collection of one image."""

    def __init__(self, images: ImageCollection, size: int | None) -> None:
        self.size = size
        self.files: list[Path] | None = None
        if isinstance(images, str | os.PathLike):
            folder = Path(images).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"image folder {folder} does not exist (or is not a folder); "
                                        "pass an existing folder of images, or a list of image tensors")
            self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
            if not self.files:
                raise ValueError(f"image folder {folder} holds no images (looked for {', '.join(PHOTO_SUFFIXES)})")
            self.items = None
        elif isinstance(images, torch.Tensor):
            batch = images.unsqueeze(0) if images.dim() == 3 else images  # one image (3, H, W)
            if batch.dim() != 4 or batch.shape[1] != 3:
                fix = f"; {rgb_fix(batch.shape[1], batched=images.dim() == 4)}" if batch.dim() == 4 else ""
                raise ValueError(f"images must be a batch (N, 3, H, W) or one image (3, H, W), got "
                                 f"{tuple(images.shape)}{fix}")
            self.items = batch
        else:
            self.items = images
        if len(self) == 0:
            raise ValueError("the image collection is empty; give at least one image")

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else len(self.items)

    @property
    def device(self) -> torch.device:
        """Where the images are: a tensor's (or the first listed tensor's) device; the CPU for a folder."""
        if isinstance(self.items, torch.Tensor):
            return self.items.device
        first = None if self.files is not None else self.items[0]
        first = first[0] if isinstance(first, tuple | list) else first
        return first.device if isinstance(first, torch.Tensor) else torch.device("cpu")

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.files is not None:
            return load_image(self.files[i], self.size, device="cpu")[0]
        item = self.items[i]
        if isinstance(item, tuple | list):  # a dataset's (image, label)
            item = item[0]
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"image {i} is a {type(item).__name__}, not a tensor; load it with helpers.load_image")
        item = item[0] if item.dim() == 4 and item.shape[0] == 1 else item
        if item.dim() != 3 or item.shape[0] != 3:
            fix = f"; {rgb_fix(item.shape[0], batched=False)}" if item.dim() == 3 else ""
            raise ValueError(f"image {i} must be a normalized (3, H, W) tensor, got shape {tuple(item.shape)}{fix}")
        return image_values(item.detach(), f"image {i}")

    def name(self, i: int) -> str:
        return self.files[i].name if self.files is not None else f"#{i}"

    def batches(self, batch_size: int):
        """Yield ``(first_index, (B, 3, H, W))``; a batch ends early where the image size changes."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        start, current = 0, []
        for i in range(len(self)):
            img = self[i]
            if current and (len(current) == batch_size or img.shape != current[0].shape):
                yield start, torch.stack(current)
                start, current = i, []
            current.append(img)
        yield start, torch.stack(current)


def load_images(images: ImageCollection, size: int | None = 224, *,
                device: torch.device | str | None = None) -> torch.Tensor:
    """All images of a collection as one normalized batch (for thumbnails and for cropping).

    Args:
        images: a folder (image files sorted by name, loaded with :func:`helpers.load_image` at ``size``),
            a tensor ``(N, 3, H, W)``, a list of ``(3, H, W)``/``(1, 3, H, W)`` tensors, or a dataset whose
            items are such tensors or ``(tensor, label)`` pairs (all the same size).
        size: side of the square images loaded from a folder (ignored for tensors).
        device: where the batch goes (default CPU).

    Returns:
        Tensor ``(N, 3, H, W)``.
    """
    source = LazyImages(images, size)
    items = [source[i] for i in range(len(source))]
    if len({tuple(t.shape) for t in items}) > 1:
        raise ValueError("the images differ in size; load them with one `size` (helpers.load_image(path, size))")
    return torch.stack(items).to("cpu" if device is None else device)
