import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAMPLE_PHOTOS,
    course_photo,
    denormalize,
    load_image,
    normalize,
    photo_set,
    to_image,
    valid_range,
)


def write_png16_rgb(path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (PIL cannot write one), big-endian samples as the format says."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


@pytest.fixture
def rgb_array():
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_round_trip_of_known_image(tmp_path, rgb_array):
    path = tmp_path / "x.png"
    Image.fromarray(rgb_array).save(path)
    x = load_image(path, size=None, device="cpu")
    assert x.shape == (1, 3, 20, 30) and x.dtype == torch.float32
    assert np.allclose(to_image(x), rgb_array / 255.0, atol=1e-6)


def test_normalization_uses_imagenet_statistics(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("RGB", (4, 4), (255, 0, 128)).save(path)
    x = load_image(path, size=None, device="cpu")[0, :, 0, 0]
    expected = (torch.tensor([1.0, 0.0, 128 / 255]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x, expected, atol=1e-6)


def test_normalize_and_denormalize_are_inverse():
    x = torch.rand(2, 3, 5, 5)
    assert torch.allclose(denormalize(normalize(x)), x, atol=1e-6)
    low, high = valid_range(x)
    assert torch.allclose(denormalize(low.expand(3, 1, 1)), torch.zeros(3, 1, 1), atol=1e-6)
    assert torch.allclose(denormalize(high.expand(3, 1, 1)), torch.ones(3, 1, 1), atol=1e-6)


def test_resize_shorter_side_then_centre_crop(tmp_path):
    # 32 wide, 64 tall: the middle 32 rows are red, the rest blue -> the 16x16 centre crop is pure red.
    arr = np.zeros((64, 32, 3), dtype=np.uint8)
    arr[:, :, 2] = 255
    arr[16:48] = (255, 0, 0)
    Image.fromarray(arr).save(tmp_path / "tall.png")
    img = to_image(load_image(tmp_path / "tall.png", size=16, device="cpu"))
    assert img.shape == (16, 16, 3)
    assert np.allclose(img[2:-2], [1.0, 0.0, 0.0], atol=0.02)



def test_pad_keeps_the_whole_picture_on_a_mean_coloured_border(tmp_path):
    # 64 wide, 32 tall: red left half, green right half. Letterboxed into 16x16: 16 wide, 8 tall, centred.
    arr = np.zeros((32, 64, 3), dtype=np.uint8)
    arr[:, :32] = (255, 0, 0)
    arr[:, 32:] = (0, 255, 0)
    Image.fromarray(arr).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", size=16, fit="pad", device="cpu")
    assert x.shape == (1, 3, 16, 16)
    assert torch.equal(x[0, :, :4], torch.zeros(3, 4, 16)) and torch.equal(x[0, :, 12:], torch.zeros(3, 4, 16))
    img = to_image(x)
    assert np.allclose(img[:4], IMAGENET_MEAN, atol=1e-6)  # the border has the mean colour
    assert np.allclose(img[4:12, :7], [1.0, 0.0, 0.0], atol=0.02)   # both ends of the picture are kept
    assert np.allclose(img[4:12, 9:], [0.0, 1.0, 0.0], atol=0.02)
    cropped = to_image(load_image(tmp_path / "wide.png", size=16, device="cpu"))
    assert np.allclose(cropped[:, :7], [1.0, 0.0, 0.0], atol=0.02)  # the crop shows only the middle
    assert np.allclose(cropped[:, 9:], [0.0, 1.0, 0.0], atol=0.02) and cropped.shape == (16, 16, 3)
    # a square picture is not padded at all, and fit="pad" equals fit="crop" for it
    square = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert torch.equal(load_image(square, 16, fit="pad", device="cpu"), load_image(square, 16, device="cpu"))
    with pytest.raises(ValueError, match="fit must be"):
        load_image(square, 16, fit="letterbox")


def test_course_photo_passes_fit_on(tmp_path):
    Image.fromarray(np.full((10, 40, 3), 200, dtype=np.uint8)).save(tmp_path / "catdog_243.png")
    x, source = course_photo("catdog_243.png", folder=tmp_path, size=20, fit="pad", device="cpu")
    assert source == "catdog_243.png" and x.shape == (1, 3, 20, 20)
    assert torch.equal(x[0, :, :7], torch.zeros(3, 7, 20)) and (x[0, :, 8:12] != 0).all()


def test_numpy_and_pil_inputs(rgb_array):
    a = load_image(rgb_array, size=None, device="cpu")
    b = load_image(Image.fromarray(rgb_array), size=None, device="cpu")
    assert torch.equal(a, b)
    from skimage import data

    assert load_image(data.chelsea(), device="cpu").shape == (1, 3, 224, 224)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK"])
def test_modes_become_rgb(tmp_path, mode, rgb_array):
    img = Image.fromarray(rgb_array).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    x = load_image(path, size=16, device="cpu")
    assert x.shape == (1, 3, 16, 16) and torch.isfinite(x).all()


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent except the first pixel
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = to_image(load_image(tmp_path / "a.png", size=None, device="cpu"))
    assert np.allclose(img[0, 0], [1, 0, 0], atol=1e-6)
    assert np.allclose(img[1:, 1:], 1.0, atol=1e-6)


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(tmp_path / "g16.png")
    img = to_image(load_image(tmp_path / "g16.png", size=None, device="cpu"))
    assert np.allclose(img, 32768 / 65535, atol=1e-4)


def test_16bit_rgb_png(tmp_path):
    rgb = np.zeros((3, 5, 3), dtype=np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 32768, 0
    write_png16_rgb(tmp_path / "c16.png", rgb)
    img = to_image(load_image(tmp_path / "c16.png", size=None, device="cpu"))
    assert np.allclose(img, [1.0, 0.5, 0.0], atol=1 / 255)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: a 40x20 (w x h) file is shown 20 wide, 40 tall
    Image.new("RGB", (40, 20), (0, 200, 0)).save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg", size=None, device="cpu").shape == (1, 3, 40, 20)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        load_image(tmp_path)


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(ValueError, match=r"notes\.jpg.*not an image"):
        load_image(tmp_path / "notes.jpg")


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_truncated_image(tmp_path, rgb_array, suffix):
    path = tmp_path / f"full.{suffix}"
    Image.fromarray(np.repeat(np.repeat(rgb_array, 8, 0), 8, 1)).save(path)
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"cut\.{suffix}.*truncated"):
        load_image(cut)


def test_bad_array_and_type():
    with pytest.raises(ValueError, match="shape"):
        load_image(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(TypeError):
        load_image(42)


def test_to_image_shapes():
    x = torch.zeros(1, 3, 4, 6, requires_grad=True)
    assert to_image(x).shape == (4, 6, 3)
    assert to_image(x[0]).shape == (4, 6, 3)
    with pytest.raises(ValueError, match="batch"):
        to_image(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="shape"):
        to_image(torch.zeros(1, 4, 4))


def test_course_photo_prefers_the_users_file(tmp_path, rgb_array):
    x, source = course_photo("pug.jpg", folder=tmp_path, size=16, device="cpu")
    assert "stand-in" in source and "chelsea" in source and x.shape == (1, 3, 16, 16)
    Image.fromarray(rgb_array).save(tmp_path / "pug.jpg")
    x, source = course_photo("pug.jpg", folder=tmp_path, size=None, device="cpu")
    assert source == "pug.jpg" and x.shape == (1, 3, 20, 30)


def test_photo_set_uses_folder_only_when_it_has_enough(tmp_path, rgb_array):
    assert list(photo_set(5, tmp_path, size=8, device="cpu")) == list(SAMPLE_PHOTOS)
    for i in range(2):
        Image.fromarray(rgb_array).save(tmp_path / f"mine{i}.png")
    assert list(photo_set(2, tmp_path, size=8, device="cpu")) == ["mine0.png", "mine1.png"]
    with pytest.raises(ValueError, match="sample photos"):
        photo_set(9, tmp_path / "none")


def test_a_float_array_outside_0_1_is_refused_not_turned_white():
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (12, 10, 3))
    with pytest.raises(ValueError, match=r"must hold pixels in \[0, 1\].*0-255 values: pass arr / 255"):
        load_image(pixels, None, device="cpu")
    torch.testing.assert_close(load_image(pixels / 255, None, device="cpu"),
                               load_image(pixels.astype(np.float32) / 255, None, device="cpu"))
    with pytest.raises(ValueError, match=r"got values in \[-2, 2\]: rescale it to \[0, 1\]"):  # e.g. normalized
        load_image(np.linspace(-2, 2, 48).reshape(4, 4, 3), None, device="cpu")
    with pytest.raises(ValueError, match="NaN/inf"):
        load_image(np.full((4, 4, 3), np.nan), None, device="cpu")
    nearly = np.full((4, 4, 3), 1.0004)  # rounding overshoot is still clipped
    assert torch.allclose(load_image(nearly, None, device="cpu"), load_image(np.ones((4, 4, 3)), None, device="cpu"))
