"""load_image: RGB, EXIF orientation, full decode, and one-line DataErrors for every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageFile

from mmadapt.errors import DataError, MMAdaptError
from mmadapt.io.image import load_image

RED, BLUE = (220, 30, 30), (30, 30, 220)


def _two_halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    img = Image.new("RGB", (width, height), RED)
    img.paste(BLUE, (width // 2, 0, width, height))
    return img


def _close(pixel: tuple[int, ...], colour: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour))


def _raises_one_line(path: Path, *words: str) -> DataError:
    with pytest.raises(DataError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return info.value


def test_png_round_trip_is_rgb_and_exact(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    _two_halves().save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (40, 20)
    assert img.getpixel((5, 5)) == RED and img.getpixel((35, 5)) == BLUE


def test_image_is_fully_decoded_and_detached_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    _two_halves().save(path, quality=95)
    img = load_image(path)
    path.unlink()
    assert len(img.tobytes()) == 40 * 20 * 3
    assert _close(img.getpixel((5, 5)), RED)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 40x20 (red left, blue right) with Orientation=6: "rotate 90° clockwise to display".
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    _two_halves().save(path, quality=95, exif=exif)
    img = load_image(path)
    assert img.size == (20, 40)  # upright: portrait
    assert _close(img.getpixel((10, 5)), RED)  # the stored left half is now on top
    assert _close(img.getpixel((10, 35)), BLUE)


def test_grayscale_palette_and_alpha_become_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 8), 100).save(tmp_path / "gray.png")
    _two_halves().convert("P").save(tmp_path / "palette.png")
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((0, 0), (10, 200, 10, 255))
    rgba.save(tmp_path / "alpha.png")

    assert load_image(tmp_path / "gray.png").getpixel((3, 3)) == (100, 100, 100)
    palette = load_image(tmp_path / "palette.png")
    assert palette.mode == "RGB" and _close(palette.getpixel((35, 5)), BLUE)
    alpha = load_image(tmp_path / "alpha.png")
    assert alpha.mode == "RGB"
    assert alpha.getpixel((5, 5)) == (255, 255, 255)  # transparent → white, not black
    assert alpha.getpixel((0, 0)) == (10, 200, 10)


def test_missing_file(tmp_path: Path) -> None:
    err = _raises_one_line(tmp_path / "images" / "x.jpg", "not found")
    assert isinstance(err, ValueError) and isinstance(err, MMAdaptError)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    _raises_one_line(path, "empty", "0 bytes")


def test_directory(tmp_path: Path) -> None:
    _raises_one_line(tmp_path, "directory")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 20)
    _raises_one_line(path, "not a recognised image")


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated_file(tmp_path: Path, fmt: str, ext: str) -> None:
    whole = tmp_path / f"whole.{ext}"
    img = Image.effect_noise((64, 64), 60).convert("RGB")  # noise: enough bytes to cut in the pixel data
    img.save(whole, format=fmt)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    _raises_one_line(cut, "cannot decode image", "truncated")
    cut.write_bytes(data[:20])  # cut inside the header: still named as a truncated image, not "unknown format"
    _raises_one_line(cut, "cannot decode image", "truncated", fmt)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_bytes_after_a_valid_header(tmp_path: Path) -> None:
    whole = tmp_path / "whole.png"
    Image.effect_noise((64, 64), 60).convert("RGB").save(whole)
    data = bytearray(whole.read_bytes())
    data[100:400] = bytes(300)  # zero out part of the compressed pixel data
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    _raises_one_line(bad, "cannot decode image")
