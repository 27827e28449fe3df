import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

import sgi2v.images
from sgi2v.images import BACKGROUND, MAX_IMAGE_PIXELS, ImageError, load_image, to_rgb

RAMP16 = np.arange(0, 65536, 97, dtype=np.uint16)[:672].reshape(24, 28)  # (H, W), 0 .. 65184, odd steps


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def expected_gray(values: np.ndarray) -> np.ndarray:
    """round(v / 257) as RGB, in exact integer arithmetic."""
    gray = (values.astype(np.int64) * 2 + 257) // 514
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny gray PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# -- modes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, fmt", [("<u2", "png"), ("<u2", "tiff"), (">u2", "tiff")])
def test_16bit_gray_is_scaled_not_clipped(tmp_path, dtype, fmt):
    path = tmp_path / f"ramp.{fmt}"
    Image.fromarray(RAMP16.astype(dtype)).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I;16")  # Pillow keeps the 16 bits; convert("RGB") would clip to white
    np.testing.assert_array_equal(pixels(load_image(path)), expected_gray(RAMP16))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I;16N"])
def test_16bit_modes_in_memory(mode):
    byteorder = {"I;16B": ">u2", "I;16N": "=u2"}.get(mode, "<u2")
    image = Image.frombytes(mode, (28, 24), RAMP16.astype(byteorder).tobytes())
    np.testing.assert_array_equal(pixels(to_rgb(image)), expected_gray(RAMP16))


def test_16bit_colour_png_keeps_pillows_high_byte(tmp_path):
    """Pillow reads 16-bit RGB PNGs as 8-bit RGB (v >> 8): within one level of round(v / 257)."""
    values = RAMP16[:, :27].reshape(24, 9, 3)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in values)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 9, 24, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    (tmp_path / "rgb16.png").write_bytes(data)
    out = pixels(load_image(tmp_path / "rgb16.png")).astype(int)
    np.testing.assert_array_equal(out, values >> 8)
    assert np.abs(out - (values.astype(int) * 2 + 257) // 514).max() <= 1


def test_int32_is_read_as_16_bit_and_clipped(tmp_path):
    values = np.array([[-5, 0, 128, 129, 257, 65535, 70000, 2**31 - 1]], dtype=np.int32)
    Image.fromarray(values).save(tmp_path / "i.tiff")
    with Image.open(tmp_path / "i.tiff") as raw:
        assert raw.mode == "I"
    got = pixels(load_image(tmp_path / "i.tiff"))[0, :, 0]
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 255, 255, 255])


@pytest.mark.parametrize(
    "values, want",
    [
        ([0.0, 0.25, 0.5, 1.0], [0, 64, 128, 255]),  # max <= 1: the range is [0, 1]
        ([0.0, 1.4, 100.0, 300.0], [0, 1, 100, 255]),  # otherwise 0..255, clipped
        ([-1.0, float("nan"), 0.5, float("inf")], [0, 0, 128, 255]),  # NaN -> 0; the largest finite value is 0.5
    ],
)
def test_float_rule(tmp_path, values, want):
    Image.fromarray(np.array([values], dtype=np.float32)).save(tmp_path / "f.tiff")
    with Image.open(tmp_path / "f.tiff") as raw:
        assert raw.mode == "F"
    np.testing.assert_array_equal(pixels(load_image(tmp_path / "f.tiff"))[0, :, 0], want)


def test_rgba_png_transparent_pixels_become_white_opaque_ones_stay(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (16, 20, 4), dtype=np.uint8)
    rgba[..., 3] = rng.choice([0, 255, 128], size=(16, 20))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = pixels(load_image(tmp_path / "a.png")).astype(int)
    alpha = rgba[..., 3]
    assert BACKGROUND == (255, 255, 255)
    np.testing.assert_array_equal(out[alpha == 0], 255)
    np.testing.assert_array_equal(out[alpha == 255], rgba[alpha == 255, :3])
    half = rgba[alpha == 128, :3].astype(int)
    np.testing.assert_array_equal(out[alpha == 128], (half * 128 + 255 * 127 + 127) // 255)


def test_gray_alpha_png(tmp_path):
    la = np.array([[[10, 255], [10, 0], [200, 255]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(pixels(load_image(tmp_path / "la.png"))[0], [[10] * 3, [255] * 3, [200] * 3])


@pytest.mark.parametrize("transparency", ["index", "alpha per entry", "none"])
def test_palette_png(tmp_path, transparency):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    image.putdata([0, 1, 2])
    extra = {"index": {"transparency": 1}, "alpha per entry": {"transparency": bytes([255, 0, 255])}, "none": {}}
    image.save(tmp_path / "p.png", **extra[transparency])
    want = [[255, 0, 0], [0, 255, 0] if transparency == "none" else [255, 255, 255], [0, 0, 255]]
    np.testing.assert_array_equal(pixels(load_image(tmp_path / "p.png"))[0], want)


def test_palette_alpha_tiff(tmp_path):
    image = Image.new("PA", (2, 1))
    image.putpalette([10, 20, 30, 200, 100, 50])
    image.putdata([(0, 255), (1, 0)])
    image.save(tmp_path / "pa.tiff")
    with Image.open(tmp_path / "pa.tiff") as raw:
        assert raw.mode == "PA"
    np.testing.assert_array_equal(pixels(load_image(tmp_path / "pa.tiff"))[0], [[10, 20, 30], [255, 255, 255]])


@pytest.mark.parametrize("mode, value", [("L", 7), ("RGB", (1, 2, 3)), ("I;16", 300)])
def test_transparent_colour_png(tmp_path, mode, value):
    image = Image.new(mode, (2, 1))
    image.putpixel((1, 0), value)
    image.save(tmp_path / "t.png", transparency=value)
    np.testing.assert_array_equal(pixels(load_image(tmp_path / "t.png"))[0], [[0, 0, 0], [255, 255, 255]])


@pytest.mark.parametrize("mode", ["RGBa", "La"])
def test_premultiplied_alpha(mode):
    data = [(100, 50, 0, 128), (0, 0, 0, 0), (9, 8, 7, 255)] if mode == "RGBa" else [(100, 128), (0, 0), (9, 255)]
    image = Image.new(mode, (3, 1))
    image.putdata(data)
    gray = mode == "La"
    want = [[227] * 3 if gray else [227, 177, 127], [255, 255, 255], [9] * 3 if gray else [9, 8, 7]]
    np.testing.assert_array_equal(pixels(to_rgb(image))[0], want)


def test_bilevel_and_gray(tmp_path):
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    bits.save(tmp_path / "b.png")
    np.testing.assert_array_equal(pixels(load_image(tmp_path / "b.png"))[0], [[0] * 3, [255] * 3])
    Image.new("L", (2, 1), 77).save(tmp_path / "l.jpg")
    np.testing.assert_allclose(pixels(load_image(tmp_path / "l.jpg")), 77, atol=1)


@pytest.mark.parametrize("mode", ["RGBX", "YCbCr", "HSV", "LAB"])
def test_colour_spaces_match_pillows_conversion(mode):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8), "RGB").convert(mode)
    assert image.mode == mode
    np.testing.assert_array_equal(pixels(to_rgb(image)), np.asarray(image.convert("RGB")))


def test_lab_white_and_black():
    lab = Image.new("LAB", (2, 1))
    lab.putdata([(255, 128, 128), (0, 128, 128)])  # L 100 and 0; a = b = 0 (stored with an offset of 128)
    np.testing.assert_allclose(pixels(to_rgb(lab))[0], [[255] * 3, [0] * 3], atol=2)


def test_cmyk_jpeg(tmp_path):
    rgb = np.zeros((32, 48, 3), dtype=np.uint8)
    rgb[:, :16] = (200, 40, 40)
    rgb[:, 16:32] = (30, 160, 90)
    rgb[:, 32:] = (250, 250, 250)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    with Image.open(tmp_path / "c.jpg") as raw:
        assert raw.mode == "CMYK"
    out = pixels(load_image(tmp_path / "c.jpg")).astype(int)
    assert np.abs(out[4:-4, [4, 24, 40]] - rgb[4:-4, [4, 24, 40]].astype(int)).max() <= 8


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, :20] = (255, 0, 0)  # left half red
    rgb[:, 20:] = (0, 0, 255)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display after turning 90 degrees clockwise
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "phone.jpg")
    assert out.size == (20, 40)
    top, bottom = pixels(out)[5, 10].astype(int), pixels(out)[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 50  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_to_rgb_copies_rgb():
    image = Image.new("RGB", (2, 2), (1, 2, 3))
    out = to_rgb(image)
    assert out is not image and out.tobytes() == image.tobytes()


# -- limits and errors ----------------------------------------------------------------------------


def test_pixel_limit(tmp_path, monkeypatch):
    assert MAX_IMAGE_PIXELS == 89_478_485
    Image.new("RGB", (40, 30)).save(tmp_path / "photo.png")
    monkeypatch.setattr(sgi2v.images, "MAX_IMAGE_PIXELS", 1199)
    with pytest.raises(ImageError, match=r"^.*photo\.png: the image is 40x30 \(0\.0 megapixels\); at most 0\.0 megapixels"):
        load_image(tmp_path / "photo.png")
    monkeypatch.setattr(sgi2v.images, "MAX_IMAGE_PIXELS", 1200)
    assert load_image(tmp_path / "photo.png").size == (40, 30)


@pytest.mark.parametrize("width, height", [(16000, 12000), (10000, 10000), (100000, 100000)])
def test_decompression_bomb_is_refused_with_its_size(tmp_path, width, height):
    """Above Pillow's warning (89.5 Mpx) and above its error threshold (179 Mpx): our message, no warning."""
    (tmp_path / "photo.png").write_bytes(png_header_only(width, height))
    megapixels = f"{width * height / 1e6:.1f}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError) as caught:
            load_image(tmp_path / "photo.png")
    assert str(caught.value) == (f"{tmp_path / 'photo.png'}: the image is {width}x{height} ({megapixels} megapixels); "
                                 "at most 89.5 megapixels are accepted")


def test_missing_folder_and_not_an_image(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"none\.png: image not found$"):
        load_image(tmp_path / "none.png")
    with pytest.raises(ImageError, match=r": is a folder, not an image$"):
        load_image(tmp_path)
    (tmp_path / "fake.png").write_text("hello")
    with pytest.raises(ImageError, match=r"fake\.png: not an image file \(or a format Pillow cannot read\)$"):
        load_image(tmp_path / "fake.png")


@pytest.mark.parametrize("fmt", ["png", "jpg", "gif"])
def test_truncated_file(tmp_path, fmt):
    noise = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / f"full.{fmt}")
    data = (tmp_path / f"full.{fmt}").read_bytes()
    (tmp_path / f"cut.{fmt}").write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match=rf"cut\.{fmt}: cannot read the image \(truncated or corrupt file\?\): "):
            load_image(tmp_path / f"cut.{fmt}")


def test_header_cut_short(tmp_path):
    (tmp_path / "cut.png").write_bytes(png_header_only(8, 8)[:40])
    with pytest.raises(ValueError) as caught:
        load_image(tmp_path / "cut.png")
    assert str(caught.value).startswith(f"{tmp_path / 'cut.png'}: ") and "\n" not in str(caught.value)


def test_trajectory_module_reexports_load_image():
    import sgi2v.trajectory

    assert sgi2v.trajectory.load_image is load_image


def test_no_heavy_imports():
    code = "import sys, sgi2v.images, sgi2v.trajectory, sgi2v.boxes; print(sorted({'torch', 'diffusers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
