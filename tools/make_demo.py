"""Regenerates the embedded demo dataset ``illustration_tl/demo/`` from Debian's openclipart-png.

    python tools/make_demo.py --openclipart=/usr/share/openclipart/png --output=illustration_tl/demo

The demo mirrors the paper's two datasets (§4) at toy scale, so that the whole
pipeline runs offline on a laptop:

* ``curated/<class>/*.png``: the hand-picked clean set of ``demo/curation.tsv``
  (about ten ImageNet classes that openclipart covers well; folder names are
  canonical ImageNet names, so ``imagenet.find(folder)`` gives the class), like
  the paper's curated 23-class set (§4.2).
* ``noisy/<original relative path>``: other openclipart images that the paper's
  file-name rule (§4.1, :class:`illustration_tl.datasets.name_mapping.NameMapper`) maps to
  ImageNet classes. They keep their original names because the labels come
  from the names. A few dozen well-covered classes are chosen, each capped, so
  the set stays small; images that are pixel-identical to another demo image or
  near-identical (perceptual hash) to a curated one are left out, so the curated
  test split is never seen while optimizing on the noisy set.

Every image is trimmed of fully transparent margins, downscaled so its longer
side is at most ``--max_side`` pixels, keeping transparency, and saved as an
optimized PNG (a 256-colour palette when that is within ``--min_palette_psnr``
dB of the full-colour image). ``SOURCES.tsv`` records each demo file's original
path and the SHA-256 of the original file. Output is deterministic: candidates
are visited in a fixed order (content hashes), and the demo is written to a
temporary folder whose contents then replace the old files.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import os
import shutil
import sys
import tempfile
import warnings
from typing import Iterable, Sequence

import numpy as np
from absl import app, flags
from PIL import Image, ImageChops

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from illustration_tl.datasets import (
    imagenet,
    name_mapping,  # noqa: E402
)
from illustration_tl.errors import UserError  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_OPENCLIPART = flags.DEFINE_string(
    "openclipart", "/usr/share/openclipart/png",
    "Root of Debian's openclipart-png images (apt-get install openclipart-png).")
_OUTPUT = flags.DEFINE_string(
    "output", os.path.join(_REPO, "illustration_tl", "demo"), "Demo folder to (re)write: its "
    "curated/, noisy/ and SOURCES.tsv are replaced; other files are kept.")
_CURATION = flags.DEFINE_string(
    "curation", os.path.join(_REPO, "illustration_tl", "demo", "curation.tsv"),
    "TSV of the hand-picked curated images: class folder, openclipart relative path.")
_MAX_SIDE = flags.DEFINE_integer("max_side", 128, "Longer side of every demo image, in px.")
_MIN_PALETTE_PSNR = flags.DEFINE_float(
    "min_palette_psnr", 35.0, "Store an image as a 256-colour palette PNG when that is "
    "at least this close (dB PSNR) to the full-colour one; 0 keeps every image exact.")
_IGNORE = flags.DEFINE_list(
    "ignore", ["openclipart_authors", "colors", "style"],
    "Ignore lists for the name rule when choosing noisy images "
    f"(any of {', '.join(name_mapping.IGNORE_LISTS)}); the curated classes' own words "
    "are never ignored. The demo's labels come from whatever rule the build uses.")
_MIN_TOKEN_LENGTH = flags.DEFINE_integer(
    "min_token_length", 2, "When choosing noisy images, ignore name words shorter than "
    "this (single letters such as the 'r' of 'orca_r.png' hit 'RV, R.V.').")
_NUM_CLASSES = flags.DEFINE_integer(
    "noisy_classes", 50, "How many ImageNet classes besides the curated ones the noisy "
    "images are chosen for (their names also map them to further classes).")
_MIN_PER_CLASS = flags.DEFINE_integer(
    "noisy_min_per_class", 5, "Keep a noisy class only if this many demo images map to it "
    "(the curated classes are always kept).")
_MAX_PER_CLASS = flags.DEFINE_integer(
    "noisy_max_per_class", 8, "Stop adding images for a class once it has this many.")
_MAX_IMAGES = flags.DEFINE_integer("noisy_max_images", 600, "At most this many noisy images.")
_NEAR_DUPLICATE_BITS = flags.DEFINE_integer(
    "near_duplicate_bits", 40, "A noisy image whose 512-bit perceptual hash is within this "
    "Hamming distance of a curated image's is a near-copy and is left out.")
_MAX_SOURCE_PIXELS = flags.DEFINE_integer(
    "max_source_pixels", 40_000_000, "Skip source images larger than this (a few openclipart "
    "PNGs are 170-megapixel posters).")


@dataclasses.dataclass(frozen=True)
class DemoImage:
    """One demo file: where it goes, where it came from, and its encoded pixels."""

    demo_path: str  # relative to the demo folder, '/'-separated
    original_path: str  # relative to the openclipart root
    original_sha256: str
    png: bytes
    pixel_key: str
    phash: int


def read_curation(path: str) -> list[tuple[str, str]]:
    """(class folder, openclipart path) rows of the curation TSV (paper §4.2's clean set)."""
    if not os.path.isfile(path):
        raise UserError(f"--curation={path!r} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip() and not line.startswith("#")]
    for n, row in enumerate(csv.reader(lines[1:], delimiter="\t"), start=2):
        if len(row) != 2:
            raise UserError(f"{path}: data row {n}: expected 'class<TAB>path', got {row!r}")
        folder, rel = row
        c = imagenet.find(folder)
        if c is None or c.name != folder.replace("_", " "):
            raise UserError(f"{path}: class folder {folder!r} is not the canonical name of an "
                            f"ImageNet class{f' (use {c.name!r})' if c else ''}")
        rows.append((folder, rel))
    return rows


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def open_downscaled(path: str, max_side: int, max_pixels: int) -> Image.Image | None:
    """The image at ``path`` as RGBA (or RGB when opaque), trimmed of fully
    transparent margins, longer side <= ``max_side``.

    None when it cannot be decoded or is larger than ``max_pixels``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as src:
                if src.width * src.height > max_pixels:
                    return None
                src.load()
                has_alpha = src.mode in ("RGBA", "LA", "PA") or "transparency" in src.info
                im = src.convert("RGBA" if has_alpha else "RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if has_alpha:  # many drawings sit small on a transparent page: trim it
        bbox = im.getchannel("A").getbbox()
        if bbox:
            im = im.crop(bbox)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return im


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio (dB) of ``b`` against ``a``, the worse of the two
    drawings composited on white and on black (so alpha errors count too)."""
    worst = float("inf")
    for background in ((255, 255, 255, 255), (0, 0, 0, 255)):
        x, y = (np.asarray(_on(im, background), dtype=np.float64) for im in (a, b))
        mse = float(np.mean((x - y) ** 2))
        worst = min(worst, float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    return worst


def _on(im: Image.Image, background: tuple[int, int, int, int]) -> Image.Image:
    rgba = im.convert("RGBA")
    out = Image.new("RGBA", rgba.size, background)
    out.alpha_composite(rgba)
    return out.convert("RGB")


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def encode_png(im: Image.Image, min_palette_psnr: float) -> bytes:
    """The image as an optimized PNG: a 256-colour palette PNG (with per-entry alpha)
    when that is smaller and at least ``min_palette_psnr`` dB close to ``im`` (flat
    clip art nearly always is), else the exact RGB(A) pixels."""
    exact = _png_bytes(im)
    if min_palette_psnr <= 0:
        return exact
    palette = im.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                          dither=Image.Dither.NONE)
    small = _png_bytes(palette)
    if len(small) < len(exact) and psnr(im, palette) >= min_palette_psnr:
        return small
    return exact


def pixel_key(im: Image.Image) -> str:
    """A hash of the decoded RGBA pixels: equal for pixel-identical images."""
    rgba = im.convert("RGBA")
    return hashlib.sha256(repr(rgba.size).encode() + rgba.tobytes()).hexdigest()


def perceptual_hash(im: Image.Image, size: int = 16) -> int:
    """A ``2*size*size``-bit perceptual hash: an average hash and a difference hash of
    the drawing on white, cropped to its content. Near-copies (the same drawing at
    another resolution, recoloured or slightly retouched) differ in few bits; on
    openclipart they are within 40 bits, unrelated drawings 50 or more apart."""
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    white.alpha_composite(rgba)
    gray = white.convert("L")
    bbox = ImageChops.invert(gray).getbbox()
    if bbox:
        gray = gray.crop(bbox)
    avg = gray.resize((size, size), Image.Resampling.BOX).tobytes()
    mean = sum(avg) / len(avg)
    bits = [p < mean for p in avg]
    diff = gray.resize((size + 1, size), Image.Resampling.BOX).tobytes()
    bits += [diff[r * (size + 1) + c] < diff[r * (size + 1) + c + 1]
             for r in range(size) for c in range(size)]
    return sum(1 << i for i, b in enumerate(bits) if b)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclasses.dataclass(frozen=True)
class Encoding:
    """How source images become demo files."""

    max_side: int = 128
    max_pixels: int = 40_000_000
    min_palette_psnr: float = 35.0


def make_image(root: str, rel: str, demo_path: str, enc: Encoding) -> DemoImage | None:
    """The demo version of openclipart file ``rel``; None if it cannot be used."""
    im = open_downscaled(os.path.join(root, rel), enc.max_side, enc.max_pixels)
    if im is None:
        return None
    png = encode_png(im, enc.min_palette_psnr)
    final = Image.open(io.BytesIO(png))  # hash what the demo file decodes to
    return DemoImage(demo_path, rel, sha256_file(os.path.join(root, rel)), png,
                     pixel_key(final), perceptual_hash(final))


def curated_images(root: str, curation: Sequence[tuple[str, str]],
                   enc: Encoding) -> list[DemoImage]:
    """The curated set: ``curated/<class>/<original file name>`` (parent folder prefixed
    when two picks of a class share a file name)."""
    out, taken = [], set()
    for folder, rel in curation:
        src = os.path.join(root, rel)
        if not os.path.isfile(src):
            raise UserError(f"curated image {rel!r} is not under --openclipart={root!r}")
        name = os.path.basename(rel)
        if (folder, name) in taken:
            name = rel.replace("/", "_")
        taken.add((folder, name))
        image = make_image(root, rel, f"curated/{folder}/{name}", enc)
        if image is None:
            raise UserError(f"curated image {rel!r} cannot be decoded")
        out.append(image)
    keys = collections.Counter(i.pixel_key for i in out)
    dups = [i.original_path for i in out if keys[i.pixel_key] > 1]
    if dups:
        raise UserError(f"curation lists pixel-identical images: {dups}; keep one")
    return out


def list_images(root: str) -> list[str]:
    """Every PNG under ``root``, relative, in sorted order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        out += [os.path.relpath(os.path.join(dirpath, f), root)
                for f in sorted(filenames) if f.lower().endswith(".png")]
    return out


def selection_options(ignore: Sequence[str], keep_words: Iterable[str],
                      min_token_length: int) -> name_mapping.MappingOptions:
    """The name rule used to pick noisy images: the paper's any-word rule (§4.1) with
    the ``ignore`` lists and ``min_token_length``, except that ``keep_words`` (the
    curated classes' words, such as ``orange``, also a colour) are never ignored."""
    options = name_mapping.MappingOptions.create(min_token_length=min_token_length,
                                                 ignore=ignore)
    return dataclasses.replace(options, ignore_words=options.ignore_words - set(keep_words))


def class_words(indices: Iterable[int]) -> set[str]:
    """Every word of every synonym of the given ImageNet classes."""
    return {w for i in indices for n in imagenet.by_index(i).names
            for w in name_mapping.tokenize(n)}


def noisy_images(root: str, options: name_mapping.MappingOptions,
                 curated: Sequence[DemoImage], enc: Encoding, *, num_classes: int,
                 min_per_class: int, max_per_class: int, max_images: int,
                 near_duplicate_bits: int,
                 progress: bool = True) -> list[DemoImage]:
    """A small noisy set (paper §4.1): name-mapped images of well-covered classes.

    Candidates are the openclipart files that the name rule (``options``) maps to
    at least one class, minus the curated files. Eligible are the curated classes
    (not capped) and the ``num_classes`` classes with at least ``min_per_class``
    candidates that are best covered: most candidates whose name holds the whole
    class name (``pizza_slice`` for pizza), then most candidates. Candidates are
    visited in a fixed order (those of the curated classes first, then those whose
    name holds a whole class name, then those that share only one word with one,
    like ``pc_box`` with pencil box; each group by SHA-256, a fixed shuffle) and
    taken while one of their eligible classes has fewer than ``max_per_class``
    images, unless they are undecodable, pixel-identical to an image already
    taken, or a near-copy of a curated image. Finally, images none of whose
    classes reached ``min_per_class`` are dropped, so each feeds a usable class.
    """
    curated_paths = {i.original_path for i in curated}
    curated_classes = {imagenet.find(i.demo_path.split("/")[1]).index for i in curated}
    mapper = name_mapping.NameMapper(options)
    phrases = name_mapping.NameMapper(dataclasses.replace(options, phrase_mode=True))
    candidates = {}
    for rel in list_images(root):
        if rel in curated_paths:
            continue
        classes = mapper.class_indices(rel)
        if classes:
            candidates[rel] = classes
    per_class = collections.Counter(c for cs in candidates.values() for c in cs)
    whole_name = collections.Counter(c for rel in candidates for c in phrases.class_indices(rel))
    ranked = sorted((c for c, n in per_class.items() if n >= min_per_class),
                    key=lambda c: (-whole_name[c], -per_class[c], c))
    eligible = set(ranked[:num_classes]) | curated_classes
    order = sorted(candidates, key=lambda rel: (
        not candidates[rel] & curated_classes, not phrases.class_indices(rel) & eligible,
        sha256_file(os.path.join(root, rel)), rel))

    def wanted(classes: set[int], counts: collections.Counter) -> bool:
        return any(c in curated_classes or counts[c] < max_per_class for c in classes)

    taken: list[tuple[DemoImage, set[int]]] = []
    counts: collections.Counter = collections.Counter()
    seen_pixels = {i.pixel_key for i in curated}
    skipped = collections.Counter()
    for rel in order:
        if len(taken) >= max_images:
            break
        classes = candidates[rel] & eligible
        if not wanted(classes, counts):
            continue
        image = make_image(root, rel, f"noisy/{rel}", enc)
        if image is None:
            skipped["undecodable or too large"] += 1
            continue
        if image.pixel_key in seen_pixels:
            skipped["pixel-identical to a demo image"] += 1
            continue
        if any(hamming(image.phash, c.phash) <= near_duplicate_bits for c in curated):
            skipped["near-copy of a curated image"] += 1
            continue
        seen_pixels.add(image.pixel_key)
        taken.append((image, classes))
        counts.update(classes)
        if progress and len(taken) % 100 == 0:
            print(f"  noisy: {len(taken)} images taken", flush=True)

    while True:  # drop images whose classes all stayed too small
        counts = collections.Counter(c for _, cs in taken for c in cs)
        good = {c for c, n in counts.items() if n >= min_per_class} | curated_classes
        kept = [(i, cs) for i, cs in taken if cs & good]
        if len(kept) == len(taken):
            break
        skipped["class below --noisy_min_per_class"] += len(taken) - len(kept)
        taken = kept
    if progress:
        for reason, n in sorted(skipped.items()):
            print(f"  noisy: skipped {n} ({reason})")
    return sorted((i for i, _ in taken), key=lambda i: i.demo_path)


def write_demo(output: str, images: Iterable[DemoImage]) -> None:
    """Writes ``curated/``, ``noisy/`` and ``SOURCES.tsv`` under ``output``, replacing
    the old ones only once everything is written (other files are left alone)."""
    os.makedirs(output, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".make_demo-", dir=output)
    try:
        rows = []
        for image in images:
            dest = os.path.join(tmp, *image.demo_path.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(image.png)
            rows.append((image.demo_path, image.original_path, image.original_sha256))
        with open(os.path.join(tmp, "SOURCES.tsv"), "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["demo_path", "original_path", "original_sha256"])
            w.writerows(sorted(rows))
        for name in ("curated", "noisy", "SOURCES.tsv"):
            old = os.path.join(output, name)
            if os.path.isdir(old):
                shutil.rmtree(old)
            new = os.path.join(tmp, name)
            if os.path.exists(new):
                os.replace(new, old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str]) -> int:
    root = _OPENCLIPART.value
    if not os.path.isdir(root):
        raise UserError(f"--openclipart={root!r} is not a folder; install Debian's "
                        "openclipart-png or point at its png/ folder")
    bad = [n for n in _IGNORE.value if n not in name_mapping.IGNORE_LISTS]
    if bad:
        raise UserError(f"--ignore={','.join(bad)}: unknown list")
    curation = read_curation(_CURATION.value)
    print(f"curated: {len(curation)} images from {_CURATION.value}", flush=True)
    enc = Encoding(_MAX_SIDE.value, _MAX_SOURCE_PIXELS.value, _MIN_PALETTE_PSNR.value)
    curated = curated_images(root, curation, enc)
    curated_classes = {imagenet.find(folder).index for folder, _ in curation}
    options = selection_options(_IGNORE.value, class_words(curated_classes),
                                _MIN_TOKEN_LENGTH.value)
    noisy = noisy_images(
        root, options, curated, enc, num_classes=_NUM_CLASSES.value,
        min_per_class=_MIN_PER_CLASS.value,
        max_per_class=_MAX_PER_CLASS.value, max_images=_MAX_IMAGES.value,
        near_duplicate_bits=_NEAR_DUPLICATE_BITS.value)
    write_demo(_OUTPUT.value, list(curated) + noisy)
    size = sum(len(i.png) for i in list(curated) + noisy)
    print(f"wrote {len(curated)} curated and {len(noisy)} noisy images "
          f"({size / 1e6:.2f} MB of PNG) to {_OUTPUT.value}")
    return 0


def run() -> None:
    def guarded(argv: Sequence[str]) -> int:
        try:
            return main(argv)
        except UserError as e:
            print(f"make_demo.py: error: {e}", file=sys.stderr)
            return 2

    app.run(guarded)


if __name__ == "__main__":
    run()
