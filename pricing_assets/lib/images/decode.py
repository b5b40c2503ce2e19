"""Image bytes: format sniffing, validation and decoding (no HTTP, no store writes).

:func:`sniff_image_format` names the format from the magic bytes; :func:`inspect_image_bytes`
validates a whole file (size cap ``max_bytes``, pixel cap ``max_pixels`` read from the header
before decoding as a decompression-bomb guard, Pillow's own ``DecompressionBombError`` mapped to
``too_large``, then a full decode so truncated files are caught as ``corrupt``) and describes it,
with width/height after the EXIF orientation transpose; :func:`open_image_rgb` opens a stored
image as RGB with that transpose applied. :class:`ImageRejected` is the final, non-retryable
verdict on a link or its bytes, raised here and by :mod:`pricing_assets.lib.images.url_safety` and the
fetcher (:mod:`pricing_assets.lib.images.fetch`).
"""

import hashlib
import io
import warnings
from typing import Any

import fsspec
from PIL import Image, ImageOps

# Magic numbers: JPEG (JFIF/Exif) FF D8 FF; PNG 8-byte signature (RFC 2083 §3.1);
# GIF87a/GIF89a; WEBP = RIFF container with "WEBP" form type (RFC 9649 §2).
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}


class ImageRejected(ValueError):
    """A final, non-retryable verdict on a link or its bytes.

    ``status`` is one of :data:`pricing_assets.lib.images.fetch.STATUSES` (never ``"ok"``); ``reason``
    says why in words.
    """

    def __init__(self, status: str, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def sniff_image_format(data: bytes) -> str | None:
    """Return the image format named by the magic bytes, or None.

    Args:
        data: the first bytes of a file (12 are enough).

    Returns:
        ``"JPEG"``, ``"PNG"``, ``"GIF"`` or ``"WEBP"`` (Pillow's format names), else None.
        Signatures: JPEG SOI marker ``FF D8 FF``; PNG ``89 50 4E 47 0D 0A 1A 0A`` (RFC 2083);
        ``GIF87a``/``GIF89a``; WEBP ``RIFF????WEBP`` (RFC 9649).
    """
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def inspect_image_bytes(data: bytes, max_bytes: int, max_pixels: int) -> dict[str, Any]:
    """Validate image bytes and describe them, or raise ``ImageRejected``-compatible errors.

    Args:
        data: whole file content.
        max_bytes: size cap in bytes.
        max_pixels: cap on ``width * height`` checked from the header before decoding.

    Returns:
        dict with ``sha256`` (hex str), ``format`` (str, from magic bytes), ``ext`` (str),
        ``width``/``height`` (int pixels, after EXIF orientation), ``aspect_ratio`` (float,
        width / height), ``n_bytes`` (int), ``mode`` (str, Pillow mode of the stored file) and
        ``has_alpha`` (bool: alpha band or palette transparency).

    Raises:
        ImageRejected: with ``status`` in ``corrupt`` (0 bytes, undecodable, truncated),
            ``too_large`` (bytes or pixels over the caps, Pillow decompression bomb) or
            ``not_image`` (magic bytes not JPEG/PNG/GIF/WEBP).
    """
    n = len(data)
    if n == 0:
        raise ImageRejected("corrupt", "empty body (0 bytes)")
    if n > max_bytes:
        raise ImageRejected("too_large", f"{n} bytes > max_bytes {max_bytes}")
    fmt = sniff_image_format(data[:16])
    if fmt is None:
        raise ImageRejected("not_image", f"magic bytes {data[:8].hex()} are not JPEG/PNG/GIF/WEBP")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageRejected("corrupt", f"image declares size {width}x{height}")
            if width * height > max_pixels:
                raise ImageRejected(
                    "too_large",
                    f"{width}x{height} = {width * height} pixels > max_pixels {max_pixels} (decompression-bomb guard)",
                )
            if img.format != fmt:
                raise ImageRejected("corrupt", f"magic bytes say {fmt} but Pillow decodes it as {img.format}")
            mode = img.mode
            has_alpha = "A" in img.getbands() or "transparency" in img.info
            orientation = img.getexif().get(0x0112, 1)
            img.load()  # full decode: raises on truncated / broken data
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_large", f"Pillow decompression-bomb guard: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError/SyntaxError/ValueError/...
        raise ImageRejected("corrupt", f"Pillow cannot decode {fmt}: {exc}") from exc
    if orientation in (5, 6, 7, 8):  # EXIF orientations that swap the axes (EXIF 2.32 §4.6.4)
        width, height = height, width
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "format": fmt,
        "ext": _EXTENSIONS[fmt],
        "width": int(width),
        "height": int(height),
        "aspect_ratio": float(width) / float(height),
        "n_bytes": n,
        "mode": mode,
        "has_alpha": bool(has_alpha),
    }


def open_image_rgb(uri: str, storage_options: dict | None = None) -> Image.Image:
    """Open a stored image as an RGB Pillow image with EXIF orientation applied.

    Args:
        uri: local path or fsspec URL (e.g. an ``image_uri`` from :func:`pricing_assets.lib.images.fetch.fetch_images`).
        storage_options: fsspec options (e.g. ``{"endpoint_url": …}`` for S3).

    Returns:
        ``PIL.Image.Image`` in mode ``"RGB"``, size ``(width, height)`` after
        ``ImageOps.exif_transpose``. Transparent pixels are composited onto white (product
        photos with a transparent background would otherwise turn black).

    Raises:
        FileNotFoundError: if ``uri`` does not exist.
        PIL.UnidentifiedImageError / OSError: if the file is not a decodable image.
        PIL.Image.DecompressionBombError: for images over Pillow's own pixel limit.
    """
    with fsspec.open(uri, "rb", **(storage_options or {})) as fh:
        data = fh.read()
    img = Image.open(io.BytesIO(data))
    img = ImageOps.exif_transpose(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")
