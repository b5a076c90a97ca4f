"""Load one image file into a fully decoded RGB ``PIL.Image.Image``.

What :func:`load_image` guarantees:

* mode ``"RGB"``; images with transparency (``RGBA``, ``LA``, ``PA``, palette + transparency) are composited
  onto white first, as Hugging Face image processors do, so transparent pixels do not turn black;
* EXIF orientation applied (``ImageOps.exif_transpose``): a phone photo stored sideways comes back upright;
  unreadable EXIF metadata is ignored with a warning rather than losing the pixels;
* fully decoded (``Image.load()``), so a truncated or corrupt file fails *here*, inside the data loader,
  and not later inside a transform;
* every failure is a :class:`~mmadapt.errors.DataError` with a one-line message naming the path and what is
  wrong, e.g. ``DataError: images/x.jpg: cannot decode image (truncated file)``.

Truncated files are never accepted: this module does not set ``ImageFile.LOAD_TRUNCATED_IMAGES``. (A
file that lost only bytes *after* its pixel data, such as a PNG's end marker, still decodes completely and
is accepted: every pixel is there.)

The source is a path or a member of a WebDataset shard (:class:`~mmadapt.io.shard_member.ShardMember`: its
bytes are decoded from memory, messages name ``shard.tar:member``).
"""

from __future__ import annotations

import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from mmadapt.errors import DataError
from mmadapt.io._files import check_media, one_line
from mmadapt.io.shard_member import MediaSource, open_media, read_head

__all__ = ["load_image"]


def load_image(path: MediaSource) -> Image.Image:
    """Read ``path`` (a file or a shard member) and return it as a fully decoded RGB image with EXIF
    orientation applied.

    Raises:
        DataError: the file is missing, is a directory, is empty (0 bytes), is not a recognised image
            format, or cannot be decoded (truncated or corrupt). The message is one line:
            ``"{path}: {what is wrong}"``.
    """
    where = check_media(path, "image")
    opened_source = open_media(path)  # a shard member's bytes are read here, outside the decoder's errors
    try:
        with Image.open(opened_source) as opened:
            opened.load()
            image = _apply_exif_orientation(opened, where)
            return _to_rgb(image)
    except UnidentifiedImageError:
        known = _sniff_format(path)
        if known is not None:  # right magic bytes, but Pillow could not parse the header
            raise DataError(f"{where}: cannot decode image (truncated or corrupt {known} header)") from None
        raise DataError(f"{where}: not a recognised image file (unknown format)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{where}: image too large to decode safely ({one_line(exc)})") from None
    except PermissionError:
        raise DataError(f"{where}: permission denied") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, EOFError, struct.error, ...
        raise DataError(f"{where}: cannot decode image ({_decode_reason(exc)})") from None


def _apply_exif_orientation(image: Image.Image, where: str) -> Image.Image:
    """Rotate / flip ``image`` as its EXIF Orientation tag says; keep it as is if the EXIF is unreadable."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - broken EXIF must not cost us the pixels
        warnings.warn(f"{where}: ignoring unreadable EXIF orientation ({one_line(exc)})", stacklevel=3)
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert to RGB, compositing any transparency onto a white background."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "RGB":
        return image.copy()
    return image.convert("RGB")


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff_format(source: MediaSource) -> str | None:
    """The format named by the file's magic bytes (``None`` if unknown), to tell a cut header from a non-image."""
    try:
        head = read_head(source, 12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def _decode_reason(exc: BaseException) -> str:
    """A short, one-line reason for a decode failure; Pillow's truncation messages become 'truncated file'."""
    if not str(exc).strip():  # no message at all: EOFError means truncated, any other says only its type
        return "truncated file" if isinstance(exc, EOFError) else type(exc).__name__
    text = one_line(exc)
    lowered = text.lower()
    if "truncated" in lowered or isinstance(exc, EOFError) or "premature end" in lowered:
        return "truncated file"
    if not isinstance(exc, (OSError, SyntaxError, ValueError)):
        return f"{type(exc).__name__}: {text}"
    return text
