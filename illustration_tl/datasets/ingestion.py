"""Image ingestion: any clip-art file in, one RGB uint8 array out (paper §4).

The paper trains on clip art gathered from the web; real collections mix PNGs
with transparent backgrounds, palette images, grayscale and 1-bit drawings,
CMYK JPEGs, PNGs named ``.jpg``, huge scans, SVGs and broken downloads. This
module turns every one of them into the same thing, for the dataset builder
and, later, for ``predict`` (so training and serving see the same pixels):

- the format is detected from the bytes, never from the file extension;
- transparency (RGBA, LA, palette or colour-key ``tRNS``) is composited on a
  background, white by default, as the illustrations are drawn on paper;
- 1, L, P, CMYK, YCbCr, 16-bit and float modes are converted to 8-bit RGB;
- animated GIF / PNG / WebP files contribute their first frame;
- only regular files are opened (never a FIFO or a device) and at most
  ``max_file_bytes`` are read;
- an image whose header declares more than ``max_pixels`` pixels, or whose
  decoded frame would take more than ``max_pixels`` x 3 bytes (width x height
  x channels x bytes per sample: an RGBA or 16-bit image of fewer pixels can
  be over), is refused before it is decoded (decompression-bomb guard);
- SVG is rasterized with resvg (a real SVG renderer), the longer side at
  ``svg_size`` pixels; it may not read anything else: SVGs that declare XML
  entities (XXE, "billion laughs") or refer to other files or URLs
  (``<image href="/etc/...">``, ``../x.png``, ``http://``) are refused;
- optionally the image is downscaled so its longer side is ``max_side``.

Anything that cannot be read raises :class:`IngestionError` with a one-line
reason; callers (the builder, through :mod:`~illustration_tl.datasets.batch_ingestion`)
skip and list such files instead of aborting. Only Pillow and NumPy are used: no
TensorFlow import, so worker processes start fast.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
import zlib
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps

from illustration_tl.core import files

# Pillow's own decompression-bomb limit (about 89.5 megapixels), our default.
DEFAULT_MAX_PIXELS = 89_478_485
DEFAULT_BACKGROUND = (255, 255, 255)
DEFAULT_SVG_SIZE = 512
DEFAULT_MAX_FILE_BYTES = files.DEFAULT_MAX_FILE_BYTES
# The decode-memory bound is max_pixels RGB pixels at 8 bits: bytes per pixel budgeted.
DECODE_BYTES_PER_PIXEL = 3
# A gzip-compressed SVG may not expand beyond this (gzip bombs).
MAX_SVG_BYTES = 64 * 1024 * 1024

# format name -> Pillow plugin name
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "bmp": "BMP", "webp": "WEBP",
                "tiff": "TIFF"}
SUPPORTED_FORMATS = ("png", "jpeg", "gif", "bmp", "webp", "tiff", "svg")

PathOrBytes = Union[str, os.PathLike, bytes, bytearray, memoryview]


class IngestionError(Exception):
    """A file that is not a decodable image; ``reason`` is one line for a log or TSV."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason.replace("\t", " ").replace("\n", " ")


def sniff_format(data: bytes) -> str | None:
    """The image format of ``data`` from its magic bytes (``png``, ``jpeg``, ``svg`` ...).

    Returns None for anything else. Gzip data is reported as ``svg`` only when
    it decompresses to SVG (``.svgz``).
    """
    head = data[:32]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and len(data) >= 26:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = _gunzip(data, 8192)
        except (OSError, EOFError, zlib.error):
            return None
        return "svg" if _looks_like_svg(inner) else None
    return "svg" if _looks_like_svg(data) else None


def _looks_like_svg(data: bytes) -> bool:
    text = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<?xml", b"<svg", b"<!doctype svg", b"<!--")) and b"<svg" in text


def _gunzip(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of gzip ``data`` decompressed (never a whole gzip bomb)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    return d.decompress(data, limit)


def read_bytes(path_or_bytes: PathOrBytes, max_bytes: int | None = DEFAULT_MAX_FILE_BYTES
               ) -> bytes:
    """The bytes of a path, or the bytes themselves; IngestionError if unreadable.

    Only a regular file is opened (a FIFO, a device such as ``/dev/zero`` or a
    socket is refused without reading) and it may hold at most ``max_bytes``.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    try:
        return files.read_regular_file(path_or_bytes, max_bytes)
    except files.UnreadableFile as e:
        raise IngestionError(str(e)) from None


_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_XLINK = "{http://www.w3.org/1999/xlink}href"
# url(...) that is not a same-document reference (url(#id)) or inline data.
_EXTERNAL_URL = re.compile(r"url\(\s*['\"]?\s*(?!#|data:)([^)'\"]*)", re.IGNORECASE)
_IMPORT = re.compile(r"@import", re.IGNORECASE)


def check_svg(text: str) -> None:
    """Raises IngestionError if rendering the SVG could read anything but its own text.

    Refused: XML entity declarations (external entities read files, nested
    ones expand exponentially), and references to other files or URLs in
    ``href``/``xlink:href`` (``<image>``, ``<use>``, ``<feImage>`` ...), CSS
    ``url(...)`` and ``@import``. Same-document references (``#id``) and
    inline ``data:`` images are fine. ``<a href>`` links are never followed
    by a renderer and are allowed.
    """
    import xml.etree.ElementTree as ET

    if _ENTITY.search(text.encode("utf-8", "surrogatepass")):
        raise IngestionError("SVG declares XML entities (<!ENTITY>); refused: external "
                             "entities read other files and nested ones expand without bound")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise IngestionError(f"SVG could not be parsed: {one_line(e)}") from None
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
        for attr, value in element.attrib.items():
            name = attr.rsplit("}", 1)[-1]
            if name == "href" and tag != "a":
                v = value.strip()
                if not (v.startswith("#") or v[:5].lower() == "data:" or not v):
                    raise IngestionError(
                        f"SVG <{tag}> refers to an external resource ({_short(v)}); refused: "
                        "an SVG may not read other files or URLs")
            elif "url(" in value.lower():
                m = _EXTERNAL_URL.search(value)
                if m and m.group(1).strip():
                    raise IngestionError(
                        f"SVG attribute {name} refers to an external resource "
                        f"({_short(m.group(1))}); refused: an SVG may not read other files "
                        "or URLs")
        if tag == "style" and element.text:
            m = _EXTERNAL_URL.search(element.text)
            if _IMPORT.search(element.text) or (m and m.group(1).strip()):
                raise IngestionError("SVG <style> imports or refers to an external resource; "
                                     "refused: an SVG may not read other files or URLs")


def _short(text: str) -> str:
    text = files.display_name(text)
    return text if len(text) <= 80 else text[:77] + "..."


def rasterize_svg(data: bytes, size: int = DEFAULT_SVG_SIZE) -> bytes:
    """PNG bytes of an SVG rendered by resvg so that its longer side is ``size`` px.

    The background stays transparent (it is composited later like any RGBA
    image); ``currentColor`` renders black, as in a browser's default style.
    """
    try:
        import resvg_py
    except ImportError:
        raise IngestionError("SVG support needs resvg-py: pip install resvg-py") from None
    if data.startswith(b"\x1f\x8b"):
        try:
            data = _gunzip(data, MAX_SVG_BYTES + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise IngestionError(f"corrupt gzip-compressed SVG: {one_line(e)}") from None
        if len(data) > MAX_SVG_BYTES:
            raise IngestionError(f"gzip-compressed SVG expands past {MAX_SVG_BYTES:,} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    check_svg(text)
    try:
        return bytes(resvg_py.svg_to_bytes(svg_string=text, width=size, height=size,
                                           skip_system_fonts=False))
    except BaseException as e:  # resvg raises ValueError, or a pyo3 PanicException
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise IngestionError(f"SVG could not be rendered: {one_line(e)}") from None


def load_image(path_or_bytes: PathOrBytes, *, background: Sequence[int] | None =
               DEFAULT_BACKGROUND, max_side: int | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS,
               svg_size: int = DEFAULT_SVG_SIZE) -> np.ndarray:
    """Decodes one illustration to an RGB ``uint8`` array of shape ``(H, W, 3)``.

    Args:
      path_or_bytes: a file path or the file's bytes.
      background: RGB colour that transparent pixels are composited on; None
        drops the alpha channel instead (the colour under it shows).
      max_side: if set, downscale (Lanczos) so the longer side is at most this.
      max_pixels: refuse images declaring more pixels than this (None: no limit).
      svg_size: longer side, in pixels, at which SVG files are rasterized.

    Raises:
      IngestionError: empty, unreadable, unknown-format, truncated or corrupt
        files, and images over ``max_pixels``.
    """
    image = open_image(path_or_bytes, max_pixels=max_pixels, svg_size=svg_size)
    return to_rgb_array(image, background=background, max_side=max_side)


def open_image(path_or_bytes: PathOrBytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               svg_size: int = DEFAULT_SVG_SIZE) -> Image.Image:
    """A fully loaded Pillow image (first frame) of a file, format sniffed from bytes."""
    data = read_bytes(path_or_bytes)
    if not data:
        raise IngestionError("empty file (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise IngestionError("not an image: unrecognized content")
    if fmt == "svg":
        data, fmt = rasterize_svg(data, svg_size), "png"
    pil_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb and corrupt-EXIF warnings: we decide
            # Our own check below reads only the header and runs before any decoding;
            # Pillow's global limit steps aside so max_pixels alone decides.
            Image.MAX_IMAGE_PIXELS = None
            image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]])
            Image.MAX_IMAGE_PIXELS = pil_limit
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise IngestionError(
                    f"decompression-bomb guard: {width}x{height} = {width * height:,} pixels "
                    f"is over max_pixels={max_pixels:,}; raise max_pixels if you trust it")
            if max_pixels is not None:
                channels, sample = decode_layout(image, data, fmt)
                need = width * height * channels * sample
                bound = max_pixels * DECODE_BYTES_PER_PIXEL
                if need > bound:
                    raise IngestionError(
                        f"decode-memory guard: {width}x{height} x {channels} channel(s) x "
                        f"{sample} byte(s) = {need:,} bytes to decode, over the {bound:,}-byte "
                        f"bound (max_pixels={max_pixels:,} x {DECODE_BYTES_PER_PIXEL} bytes); "
                        "raise max_pixels if you trust it")
            image.seek(0)  # first frame of animated GIF / PNG / WebP
            image.load()
            return ImageOps.exif_transpose(image) if fmt in ("jpeg", "webp", "tiff") else image
    except IngestionError:
        raise
    except Image.DecompressionBombError as e:
        raise IngestionError(f"decompression-bomb guard: {one_line(e)}") from None
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, zlib...
        raise IngestionError(f"corrupt or truncated {fmt.upper()}: {one_line(e)}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel


def decode_layout(image: Image.Image, data: bytes, fmt: str) -> tuple[int, int]:
    """``(channels, bytes per sample)`` of a frame, from the header only (no decoding)."""
    if fmt == "png" and len(data) >= 26 and data[12:16] == b"IHDR":
        depth, colour = data[24], data[25]
        return _PNG_CHANNELS.get(colour, 4), max(1, depth // 8)
    mode = image.mode
    if mode.startswith("I;16"):
        return 1, 2
    if mode in ("I", "F"):
        return 1, 4
    return len(image.getbands()), 1


def to_rgb_array(image: Image.Image, *, background: Sequence[int] | None = DEFAULT_BACKGROUND,
                 max_side: int | None = None) -> np.ndarray:
    """Normalizes a loaded Pillow image to RGB uint8, alpha composited, maybe downscaled."""
    image = _to_rgb_or_rgba(image)
    if max_side is not None:
        image = downscale(image, max_side)
    if image.mode == "RGBA":
        if background is None:
            image = image.convert("RGB")
        else:
            bg = Image.new("RGBA", image.size, tuple(int(c) for c in background) + (255,))
            image = Image.alpha_composite(bg, image).convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:  # defensive: every branch above yields RGB
        raise IngestionError(f"unexpected decoded shape {array.shape}")
    return array


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    """RGB, or RGBA when the image carries any transparency."""
    mode = image.mode
    has_key = "transparency" in image.info
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _high_bit_depth_to_l(image)
        mode = "L"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (has_key and mode in ("P", "L", "RGB")):
        return image.convert("RGBA")
    if mode == "RGB":
        return image
    return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit or 32-bit grayscale to 8-bit L by scaling, not clipping."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.size and values.max() <= 1.0 else 255.0
    else:
        top = 65535.0 if image.mode.startswith("I;16") or (values.size and values.max() > 255) \
            else 255.0
    scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def downscale(image: Image.Image, max_side: int) -> Image.Image:
    """Lanczos-downscale so the longer side is at most ``max_side`` (never upscales)."""
    if max_side <= 0:
        raise ValueError(f"max_side must be positive, got {max_side}")
    width, height = image.size
    longest = max(width, height)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_png(array: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes of an RGB uint8 array (lossless: decoding gives the array back)."""
    out = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()


def pixel_hash(array: np.ndarray) -> str:
    """SHA-256 of an image's shape and pixels: equal for pixel-identical images."""
    h = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
    h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def byte_hash(data: bytes) -> str:
    """SHA-256 of a file's bytes: equal for byte-identical files."""
    return hashlib.sha256(data).hexdigest()


def one_line(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
