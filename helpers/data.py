"""CIFAR-10 through ``torchvision.datasets.CIFAR10``, and a synthetic stand-in for offline machines.

The real data set is always preferred and always checksum-verified by torchvision. Only when it is neither
on disk nor downloadable, and the user opted in with ``CNNVIS_OFFLINE=1``, a synthetic data set in the very
same on-disk format is written to ``<root>/cifar10-synthetic/`` (a different folder, so it can never be
mistaken for the real one) and read by :class:`SyntheticCIFAR10`, which differs from torchvision's class only
in not checking the md5 sums of the real files.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity
from torchvision.transforms import v2

from .config import DATA_DIR, default_device, offline_opt_in
from .models import OfflineStandInWarning

SYNTHETIC_FOLDER = "cifar10-synthetic"
SYNTHETIC_CLASSES = ("disc", "square", "triangle", "ring", "cross",
                     "horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard", "two dots")


class DataUnavailableError(RuntimeError):
    """CIFAR-10 is neither on disk nor downloadable."""


def _complete(folder: Path) -> bool:
    """All files of the CIFAR-10 on-disk format are in ``folder`` (existence only, no checksum)."""
    names = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    return all((folder / name).is_file() for name in names)


class SyntheticCIFAR10(CIFAR10):
    """``torchvision.datasets.CIFAR10`` for the synthetic stand-in written by :func:`write_synthetic_cifar10`.

    Identical to torchvision's class except that it does not verify the md5 sums of the real CIFAR-10 files
    (which a synthetic set cannot match); it checks only that the files exist. ``is_synthetic`` is True.
    """

    is_synthetic = True

    def _check_integrity(self) -> bool:
        return _complete(Path(self.root) / self.base_folder)

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        with open(path, "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def _shape_masks(labels: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Boolean masks ``(N, size, size)`` of each label's shape at a random place, scale and small rotation."""
    n = len(labels)

    def draw(low, high):
        return rng.uniform(low, high, (n, 1, 1)).astype(np.float32)

    cx, cy, r = draw(9, size - 9), draw(9, size - 9), draw(6.5, 9.5)
    theta = draw(-0.3, 0.3)  # a small tilt: the orientation of stripes stays the class
    period, phase, dots = draw(3.5, 5.0), draw(0, 2 * np.pi), draw(0, 2 * np.pi)
    return _draw_shapes(labels, (size, size), cx, cy, r, theta, period, phase, dots)


def _draw_shapes(labels: np.ndarray, shape: tuple[int, int], cx, cy, r, theta, period, phase,
                 dots) -> np.ndarray:
    """Boolean masks ``(N, H, W)``: each label's shape with centre ``(cx, cy)``, radius ``r``, tilt ``theta``,
    stripe ``period`` and ``phase``, and the angle ``dots`` of the two-dots class (all ``(N, 1, 1)``)."""
    n = len(labels)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    masks = np.zeros((n, *shape), dtype=bool)
    for c in range(10):
        sel = np.flatnonzero(labels == c)
        if len(sel) == 0:
            continue
        u0, v0, rc, t = xx - cx[sel], yy - cy[sel], r[sel], theta[sel]
        u = np.cos(t) * u0 + np.sin(t) * v0
        v = -np.sin(t) * u0 + np.cos(t) * v0
        d = np.sqrt(u**2 + v**2)
        k, ph = 2 * np.pi / period[sel], phase[sel]
        box = np.maximum(np.abs(u), np.abs(v))
        if c == 0:    # disc
            m = d < rc
        elif c == 1:  # square
            m = box < 0.85 * rc
        elif c == 2:  # triangle, apex up
            m = (v > -rc) & (v < 0.8 * rc) & (np.abs(u) < 0.6 * (v + rc))
        elif c == 3:  # ring
            m = (d > 0.55 * rc) & (d < rc)
        elif c == 4:  # cross
            m = ((np.abs(u) < 0.3 * rc) | (np.abs(v) < 0.3 * rc)) & (box < rc)
        elif c == 5:  # horizontal stripes
            m = (d < 1.1 * rc) & (np.sin(k * v + ph) > 0)
        elif c == 6:  # vertical stripes
            m = (d < 1.1 * rc) & (np.sin(k * u + ph) > 0)
        elif c == 7:  # diagonal stripes
            m = (d < 1.1 * rc) & (np.sin(k * (u + v) / np.sqrt(2) + ph) > 0)
        elif c == 8:  # checkerboard
            m = (box < rc) & (np.sin(k * u + ph) * np.sin(k * v + ph) > 0)
        else:         # two dots
            ox, oy = 0.6 * rc * np.cos(dots[sel]), 0.6 * rc * np.sin(dots[sel])
            m = (np.hypot(u - ox, v - oy) < 0.4 * rc) | (np.hypot(u + ox, v + oy) < 0.4 * rc)
        masks[sel] = m
    return masks


def _paint(shapes: list[np.ndarray], labels: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Paint objects on a background: uint8 images ``(N, H, W, 3)`` and the visible part of each object
    ``(N, K, H, W)`` (the shape minus what the distractor patch covers), for K shape masks ``(N, H, W)``.

    Each object gets a noisy colour with a class-dependent bias; the background is a noisy gradient; half of
    the images get a distractor patch of random colour, then pixel noise.
    """
    n, h, w = shapes[0].shape
    palette = np.random.default_rng(1234).uniform(0.15, 0.85, (10, 3)).astype(np.float32)
    fgs = [np.clip(palette[y] + rng.normal(0, 0.12, (n, 3)), 0, 1).astype(np.float32)[:, None, None, :]
           for y in labels]
    bg_a = rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32)
    bg_b = rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / (h - 1), xx / (w - 1)
    t = np.clip(0.5 + (np.cos(angle) * (xx[..., None] - 0.5) + np.sin(angle) * (yy[..., None] - 0.5)), 0, 1)
    img = bg_a * (1 - t) + bg_b * t
    for shape, fg in zip(shapes, fgs, strict=True):
        img = np.where(shape[..., None], fg, img)
    # a distractor patch of random colour in half of the images
    has = rng.random(n) < 0.5
    px, py = rng.integers(0, w - 4, n), rng.integers(0, h - 4, n)
    colour = rng.uniform(0, 1, (n, 3))
    visible = np.stack(shapes, axis=1)
    for i in np.flatnonzero(has):
        img[i, py[i]:py[i] + 4, px[i]:px[i] + 4] = colour[i]
        visible[i, :, py[i]:py[i] + 4, px[i]:px[i] + 4] = False
    img += 0.06 * rng.standard_normal(img.shape, dtype=np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), visible


def synthetic_images_with_masks(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`synthetic_cifar10_images` plus each image's object mask: the ground truth of where the evidence is.

    Returns:
        ``(images, labels, masks)``: uint8 ``(N, 32, 32, 3)``, int64 ``(N,)`` and bool ``(N, 32, 32)``, True on
        the visible pixels of the object (a distractor patch drawn over it is not object). Images and labels
        are exactly those of ``synthetic_cifar10_images(n, seed)``.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images, visible = _paint([_shape_masks(labels, rng)], [labels], rng)
    return images, labels.astype(np.int64), visible[:, 0]


def synthetic_cifar10_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic CIFAR-format images: uint8 ``(N, 32, 32, 3)`` and int64 labels ``(N,)``.

    Each class is a shape or texture orientation (see ``SYNTHETIC_CLASSES``) drawn at a random position,
    scale and tilt, in a noisy colour with a class-dependent bias, on a noisy gradient background, with a
    random distractor patch in half of the images. A LeNet learns it far above chance but not perfectly,
    and random crops and flips (which keep every class) help it generalise. The object masks come with
    :func:`synthetic_images_with_masks`.
    """
    images, labels, _ = synthetic_images_with_masks(n, seed)
    return images, labels


def synthetic_two_object_images(n: int, seed: int = 0, *, width: int = 48) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """Two objects of different classes side by side in one image (the synthetic counterpart of a cat-and-dog
    photo), with each object's mask.

    The objects are drawn like those of :func:`synthetic_cifar10_images` (same shapes, colours, background and
    distractor) in an image 32 px high and ``width`` px wide, one centred in the left third and one in the
    right third, with radii small enough that they never overlap.

    Args:
        n: number of images.
        seed: seed of everything random (a local generator).
        width: image width in pixels (at least 48, so that the two objects fit apart).

    Returns:
        ``(images, labels, masks)``: uint8 ``(N, 32, width, 3)``, int64 ``(N, 2)`` (left object's class, right
        object's class; always different) and bool ``(N, 2, 32, width)`` (the visible pixels of each object).
    """
    if width < 48:
        raise ValueError(f"width must be at least 48 px so that two objects fit apart, got {width}")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 10, n)
    second = (first + rng.integers(1, 10, n)) % 10  # never the same class
    shapes = []
    for labels, centre in ((first, width / 4), (second, 3 * width / 4)):
        def draw(low, high):
            return rng.uniform(low, high, (n, 1, 1)).astype(np.float32)

        cx, cy, r = centre + draw(-1.5, 1.5), draw(11, 21), draw(6.5, 8.5)
        theta, period, phase, dots = draw(-0.3, 0.3), draw(3.5, 5.0), draw(0, 2 * np.pi), draw(0, 2 * np.pi)
        shapes.append(_draw_shapes(labels, (32, width), cx, cy, r, theta, period, phase, dots))
    images, visible = _paint(shapes, [first, second], rng)
    return images, np.stack([first, second], axis=1).astype(np.int64), visible


def write_synthetic_cifar10(root: str | Path, n_train: int = 10_000, n_test: int = 2_000,
                            seed: int = 0) -> Path:
    """Write a synthetic stand-in in CIFAR-10's exact on-disk format (``<root>/cifar-10-batches-py/``).

    Five ``data_batch_*`` files, ``test_batch`` and ``batches.meta``, pickled dicts with ``data`` (uint8
    ``(N, 3072)``, channel-major rows), ``labels``, ``filenames``, ``batch_label``, and a ``SYNTHETIC.txt``
    saying what it is. Files are written to temporary names and renamed at the end, so an interrupted
    write leaves no half-written set behind.

    Returns:
        The ``cifar-10-batches-py`` folder.
    """
    if n_train < 5 or n_test < 1:
        raise ValueError(f"need at least 5 training and 1 test image, got {n_train} and {n_test}")
    folder = Path(root) / CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = synthetic_cifar10_images(n_train + n_test, seed)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # CIFAR rows: all R, then G, then B
    splits = np.array_split(np.arange(n_train), 5)
    batches = [(f"data_batch_{i + 1}", f"training batch {i + 1} of 5 (SYNTHETIC)", idx)
               for i, idx in enumerate(splits)]
    batches.append(("test_batch", "testing batch 1 of 1 (SYNTHETIC)", np.arange(n_train, n_train + n_test)))
    temporary = []
    try:
        for name, label, idx in batches:
            entry = {"batch_label": label, "labels": labels[idx].tolist(), "data": rows[idx],
                     "filenames": [f"synthetic_{i:06d}.png" for i in idx]}
            temporary.append((folder / (name + ".partial"), folder / name, entry))
        meta = {"num_cases_per_batch": len(splits[0]), "label_names": list(SYNTHETIC_CLASSES), "num_vis": 3072}
        temporary.append((folder / "batches.meta.partial", folder / "batches.meta", meta))
        for tmp, _, entry in temporary:
            with open(tmp, "wb") as f:
                pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
        for tmp, final, _ in temporary:
            tmp.replace(final)
    finally:
        for tmp, _, _ in temporary:
            tmp.unlink(missing_ok=True)
    (folder / "SYNTHETIC.txt").write_text(
        "This is NOT CIFAR-10: a synthetic stand-in written by helpers.write_synthetic_cifar10 "
        f"(seed {seed}, {n_train} train / {n_test} test images, classes: {', '.join(SYNTHETIC_CLASSES)}).\n")
    return folder


def cifar10_transform(augment: bool = False, normalize: bool = False) -> v2.Compose:
    """Sheet 4's transforms: to a float tensor in [0, 1]; optionally random crop (padding 4) + horizontal
    flip; optionally ``Normalize(0.5, 0.5)`` to [-1, 1]."""
    steps: list = [v2.ToImage()]
    if augment:
        steps += [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if normalize:
        steps.append(v2.Normalize([0.5] * 3, [0.5] * 3))
    return v2.Compose(steps)


REAL_FILES = [*CIFAR10.train_list, *CIFAR10.test_list, (CIFAR10.meta["filename"], CIFAR10.meta["md5"])]
"""The files of the real CIFAR-10 on-disk format and torchvision's md5 sum of each."""


def damaged_files(root: Path) -> list[str]:
    """What is wrong with the real CIFAR-10 the user has in ``root``: each file of ``<root>/cifar-10-batches-py/``
    that is missing or fails torchvision's md5 check, and the archive when it fails its own. Empty when there is
    no real data at all (no archive, no real file) or the folder is a synthetic set (it holds ``SYNTHETIC.txt``)."""
    folder = root / CIFAR10.base_folder
    archive = root / CIFAR10.filename
    present = [name for name, _ in REAL_FILES if (folder / name).is_file()]
    problems = []
    if present and not (folder / "SYNTHETIC.txt").exists():
        for name, md5 in REAL_FILES:
            path = folder / name
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif not check_integrity(str(path), md5):
                problems.append(f"{path} fails torchvision's md5 check ({path.stat().st_size:,} bytes)")
    if archive.is_file() and not check_integrity(str(archive), CIFAR10.tgz_md5):
        problems.append(f"{archive} fails its md5 check ({archive.stat().st_size:,} bytes)")
    return problems


def _damaged_message(root: Path, problems: list[str]) -> str:
    return (f"CIFAR-10 in {root} is damaged: {'; '.join(problems)}. Delete the damaged file(s) and download "
            f"{CIFAR10.url} again into {root}/ (it is unpacked on first use); CNNVIS_OFFLINE=1 does not replace "
            "damaged real data with the synthetic stand-in")


def unreadable_file(folder: Path) -> Path | None:
    """The first file of a CIFAR-format ``folder`` that does not unpickle (e.g. truncated), else None."""
    for name, _ in REAL_FILES:
        try:
            with open(folder / name, "rb") as f:
                pickle.load(f, encoding="latin1")
        except Exception:  # noqa: BLE001 - any failure to read makes the file the one to name
            return folder / name
    return None


def _unavailable_message(root: Path, reason: str) -> str:
    return (
        f"CIFAR-10 is not in {root} and could not be downloaded ({reason}). Place it by hand: download "
        f"{CIFAR10.url} (md5 {CIFAR10.tgz_md5}) and put {CIFAR10.filename} into {root}/ (it is unpacked "
        f"on first use), or unpack it there so that {root}/{CIFAR10.base_folder}/ holds data_batch_1..5, "
        "test_batch and batches.meta. Or set CNNVIS_OFFLINE=1 to use a clearly labelled synthetic stand-in."
    )


def cifar10_dataset(root: str | Path | None = None, train: bool = True, *, augment: bool = False,
                    normalize: bool = False, subset: int | None = None, seed: int = 0) -> CIFAR10:
    """CIFAR-10 (train or test split) via ``torchvision.datasets.CIFAR10``, with sheet 4's transforms.

    Real data on disk is used (md5-verified); otherwise it is downloaded; if that fails, a
    :class:`DataUnavailableError` says how to place the files by hand, unless ``CNNVIS_OFFLINE=1``: then the
    synthetic stand-in is written (once) and read, with an :class:`OfflineStandInWarning`.

    Args:
        root: folder holding ``cifar-10-batches-py/``; default the project's ``data/``.
        train: training (50,000 images) or test split (10,000).
        augment: random crop with padding 4 and random horizontal flip.
        normalize: ``Normalize(0.5, 0.5)`` after scaling to [0, 1].
        subset: keep a random subset of this many images (quick runs).
        seed: seed of the subset choice.

    Returns:
        The dataset; ``dataset.is_synthetic`` tells real from stand-in, ``dataset.classes`` names the labels.
    """
    root = Path(DATA_DIR if root is None else root).expanduser()
    transform = cifar10_transform(augment, normalize)
    dataset = None
    try:
        dataset = CIFAR10(root, train=train, transform=transform, download=False)
    except RuntimeError:
        damaged = damaged_files(root)  # before a download attempt that may overwrite them
        if (root / CIFAR10.filename).exists() or not offline_opt_in():
            try:
                dataset = CIFAR10(root, train=train, transform=transform, download=True)
            except (URLError, OSError, RuntimeError) as e:
                if damaged:
                    raise DataUnavailableError(_damaged_message(root, damaged)) from e
                if not offline_opt_in():
                    raise DataUnavailableError(_unavailable_message(root, str(e))) from e
        elif damaged:  # offline opt-in: never a synthetic set beside the user's broken real data
            raise DataUnavailableError(_damaged_message(root, damaged)) from None
    if dataset is not None:
        dataset.is_synthetic = False
    else:
        synthetic_root = root / SYNTHETIC_FOLDER
        if not _complete(synthetic_root / CIFAR10.base_folder):
            write_synthetic_cifar10(synthetic_root)
        warnings.warn(
            f"OFFLINE STAND-IN: CIFAR-10 is not in {root}, so CNNVIS_OFFLINE=1 uses SYNTHETIC data from "
            f"{synthetic_root} (shapes and stripes, not CIFAR-10 photographs).", OfflineStandInWarning,
            stacklevel=2)
        try:
            dataset = SyntheticCIFAR10(synthetic_root, train=train, transform=transform)
        except Exception as e:  # a truncated or overwritten file of the stand-in
            bad = unreadable_file(synthetic_root / CIFAR10.base_folder)
            if bad is None:
                raise
            raise DataUnavailableError(f"the synthetic stand-in file {bad} is unreadable ({type(e).__name__}, e.g. "
                                       f"truncated): delete the folder {synthetic_root} and it is written again on "
                                       "the next call") from e
    if subset is not None and subset < len(dataset):
        keep = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:subset])
        dataset.data = dataset.data[keep]
        dataset.targets = [dataset.targets[i] for i in keep]
    return dataset


def random_crop_flip(x: torch.Tensor, padding: int = 4, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Batched ``RandomCrop(size, padding)`` + ``RandomHorizontalFlip()``: an independent zero-padded crop
    offset and a coin-flip mirror per image, in a few tensor operations.

    Args:
        x: images ``(N, C, H, W)``, any dtype, any device.
        padding: zero padding on each side; offsets are uniform in ``0..2*padding``.
        generator: random source (on the CPU); None uses the global RNG.

    Returns:
        ``(N, C, H, W)``, same dtype and device.
    """
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)                          # (N, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)                          # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)                                  # mirror = reversed columns
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]            # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


CHUNK_IMAGES = 2048  # TensorLoader transforms this many images per call (about 25 MB as float32 CIFAR)


class TensorLoader:
    """A ``DataLoader`` stand-in for data that fits in memory: the whole split is one uint8 tensor on the device,
    and each batch is sliced, scaled to [0, 1], augmented with :func:`random_crop_flip` and normalized as one
    tensor. Same batches and transforms as the per-image pipeline of :func:`cifar10_transform`, without the
    per-image PIL/Python overhead. ``dataset`` is the underlying torchvision dataset (``classes``,
    ``is_synthetic``)."""

    def __init__(self, dataset: CIFAR10, batch_size: int, *, shuffle: bool, augment: bool = False,
                 normalize: bool = False, seed: int = 0, device: torch.device | str | None = None) -> None:
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.augment, self.normalize = augment, normalize
        self.device = torch.device(default_device() if device is None else device)
        self.images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.labels = torch.as_tensor(dataset.targets, dtype=torch.long, device=self.device)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.shuffle else None
        # the per-image transforms run on chunks of whole batches (the same distribution as batch by batch,
        # since each image draws its own crop and flip), so their fixed cost per call is paid once per
        # chunk, not per step
        chunk = max(1, CHUNK_IMAGES // self.batch_size) * self.batch_size
        for first in range(0, n, chunk):
            index = order[first:first + chunk] if order is not None else slice(first, first + chunk)
            x = self.images[index]
            if self.augment:  # on the uint8 pixels: a quarter of the memory traffic of float32
                x = random_crop_flip(x, 4, generator=self.generator)
            x = x.float().div_(255)
            if self.normalize:
                x = x.sub_(0.5).div_(0.5)
            y = self.labels[index]
            for start in range(0, len(y), self.batch_size):
                yield x[start:start + self.batch_size], y[start:start + self.batch_size]


def cifar10_loaders(root: str | Path | None = None, *, batch_size: int = 16, augment: bool = False,
                    normalize: bool = False, subset: int | None = None, test_subset: int | None = None,
                    test_batch_size: int = 500, seed: int = 0,
                    fast: bool = False) -> tuple[DataLoader | TensorLoader, DataLoader | TensorLoader]:
    """Train and test loaders as sheet 4 asks: batch 16, shuffled training data; augmentation and
    normalization only as requested (the test set is never augmented). See :func:`cifar10_dataset`.

    Args:
        fast: hold each split as one tensor on the device and augment whole batches at once
            (:class:`TensorLoader`) instead of torchvision's per-image ``DataLoader`` pipeline; the same
            transforms, about twice as fast for LeNet on a CPU.

    Returns:
        ``(train_loader, test_loader)``; the training order (and augmentation, with ``fast``) is reproducible
        given ``seed``.
    """
    train = cifar10_dataset(root, True, augment=augment and not fast, normalize=normalize and not fast,
                            subset=subset, seed=seed)
    test = cifar10_dataset(root, False, normalize=normalize and not fast, subset=test_subset, seed=seed)
    if fast:
        return (TensorLoader(train, batch_size, shuffle=True, augment=augment, normalize=normalize, seed=seed),
                TensorLoader(test, test_batch_size, shuffle=False, normalize=normalize, seed=seed))
    generator = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator),
            DataLoader(test, batch_size=test_batch_size, shuffle=False))
