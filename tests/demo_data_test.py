"""Tests of the embedded demo dataset (``demo/``) and its generator ``tools/make_demo.py``.

The demo stands in for the paper's two datasets (§4): a clean curated set whose
folders are ImageNet classes (§4.2) and a noisy set labelled by file names (§4.1).
"""

import csv
import hashlib
import importlib.util
import os
import sys

import pytest
from PIL import Image

from illustration_tl.datasets import imagenet, name_mapping

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "illustration_tl", "demo")
MAX_SIDE = 128
MIN_PER_CLASS = 8
MAX_BYTES = 3_000_000


def _files(sub: str) -> list[str]:
    root = os.path.join(DEMO, sub)
    return sorted(os.path.relpath(os.path.join(d, f), DEMO)
                  for d, _, fs in os.walk(root) for f in fs)


def _pixel_key(path: str) -> str:
    with Image.open(os.path.join(DEMO, path)) as im:
        rgba = im.convert("RGBA")
    return hashlib.sha256(repr(rgba.size).encode() + rgba.tobytes()).hexdigest()


CURATED = _files("curated")
NOISY = _files("noisy")
CLASSES = sorted(os.listdir(os.path.join(DEMO, "curated")))


@pytest.fixture(scope="module")
def make_demo():
    spec = importlib.util.spec_from_file_location(
        "make_demo", os.path.join(REPO, "tools", "make_demo.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the bundled demo/


def test_demo_has_curated_and_noisy_images():
    assert len(CLASSES) >= 8
    assert len(CURATED) >= 8 * len(CLASSES)
    assert 100 <= len(NOISY) <= 600


@pytest.mark.parametrize("folder", CLASSES)
def test_curated_folder_is_its_imagenet_class(folder):
    c = imagenet.find(folder)
    assert c is not None, folder
    assert c.name == folder.replace("_", " ")  # the canonical name, not a synonym


@pytest.mark.parametrize("folder", CLASSES)
def test_curated_class_has_enough_images(folder):
    files = os.listdir(os.path.join(DEMO, "curated", folder))
    assert len(files) >= MIN_PER_CLASS
    assert all(f.endswith(".png") for f in files)


def test_curated_layout_is_flat_class_folders():
    assert all(len(p.split(os.sep)) == 3 for p in CURATED)


def test_every_image_decodes_and_is_small():
    for path in CURATED + NOISY:
        with Image.open(os.path.join(DEMO, path)) as im:
            im.load()
            assert im.format == "PNG", path
            assert max(im.size) <= MAX_SIDE, (path, im.size)
            assert min(im.size) >= 1, path


def test_transparency_is_kept():
    with_alpha = 0
    for path in CURATED:
        with Image.open(os.path.join(DEMO, path)) as im:
            alpha = im.convert("RGBA").getchannel("A")
        with_alpha += alpha.getextrema()[0] < 255
    assert with_alpha >= len(CURATED) // 2  # most clip art has a transparent background


def test_no_pixel_duplicates_between_or_within_sets():
    curated = {_pixel_key(p): p for p in CURATED}
    noisy = {_pixel_key(p): p for p in NOISY}
    assert len(curated) == len(CURATED)
    assert len(noisy) == len(NOISY)
    shared = curated.keys() & noisy.keys()
    assert not shared, [(curated[k], noisy[k]) for k in shared]


def test_noisy_names_map_to_imagenet_under_the_paper_rule():
    mapper = name_mapping.NameMapper()  # the paper's rule: any shared word
    unmapped = [p for p in NOISY if not mapper.match(os.path.relpath(p, "noisy"))]
    assert not unmapped
    counts = {}
    for p in NOISY:
        for m in mapper.match(os.path.relpath(p, "noisy")):
            counts[m.index] = counts.get(m.index, 0) + 1
    assert sum(n >= 5 for n in counts.values()) >= 30  # enough classes to optimize on


def test_demo_is_under_3_mb():
    total = sum(os.path.getsize(os.path.join(d, f))
                for d, _, fs in os.walk(DEMO) for f in fs)
    assert total < MAX_BYTES, total


def test_sources_list_every_image_once():
    with open(os.path.join(DEMO, "SOURCES.tsv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["demo_path"] for r in rows] == sorted(p.replace(os.sep, "/")
                                                    for p in CURATED + NOISY)
    for r in rows:
        assert not os.path.isabs(r["original_path"]) and ".." not in r["original_path"]
        assert len(r["original_sha256"]) == 64 and int(r["original_sha256"], 16) >= 0
        if r["demo_path"].startswith("noisy/"):  # labels come from the original name
            assert r["demo_path"] == "noisy/" + r["original_path"]
    originals = [r["original_path"] for r in rows]
    assert len(set(originals)) == len(originals)


def test_curation_matches_curated_folder(make_demo):
    rows = make_demo.read_curation(os.path.join(DEMO, "curation.tsv"))
    with open(os.path.join(DEMO, "SOURCES.tsv"), encoding="utf-8") as f:
        sources = {r["original_path"]: r["demo_path"] for r in csv.DictReader(f, delimiter="\t")}
    assert len(rows) == len(CURATED)
    for folder, original in rows:
        assert sources[original].startswith(f"curated/{folder}/")


# ---------------------------------------------------------------- the generator


def _drawing(size, shape, color, canvas="RGBA"):
    """A simple drawing on a transparent (or white) canvas."""
    from PIL import ImageDraw

    im = Image.new(canvas, size, (0, 0, 0, 0) if canvas == "RGBA" else "white")
    d = ImageDraw.Draw(im)
    w, h = size
    black = (0, 0, 0, 255)
    if shape == "ellipse":
        d.ellipse((w // 4, h // 5, 3 * w // 4, 4 * h // 5), fill=color, outline=black, width=3)
    elif shape == "wedge":
        d.polygon([(w // 5, 4 * h // 5), (4 * w // 5, 4 * h // 5), (w // 2, h // 5)],
                  fill=color, outline=black)
    elif shape == "ring":
        d.ellipse((w // 5, h // 5, 4 * w // 5, 4 * h // 5), outline=color, width=w // 12)
    elif shape == "cross":
        d.rectangle((w // 2 - w // 10, h // 8, w // 2 + w // 10, 7 * h // 8), fill=color)
        d.rectangle((w // 8, h // 3 - h // 10, 7 * w // 8, h // 3 + h // 10), fill=color)
    else:  # stripes-N: N horizontal bars
        n = int(shape.split("-")[1])
        for k in range(n):
            top = h * (2 * k) // (2 * n)
            d.rectangle((w // 10, top, 9 * w // 10, top + h // (2 * n)), fill=color)
    return im


@pytest.fixture()
def clipart(tmp_path):
    """A tiny openclipart-like tree: drawings named by content, a copy in two folders,
    a near-copy at another size, an undecodable file, and a big poster."""
    root = tmp_path / "png"
    for d in ("food", "party", "toys", "special"):
        (root / d).mkdir(parents=True)
    yellow = (250, 230, 40, 255)
    _drawing((400, 300), "ellipse", yellow).save(root / "food/lemon.png")
    _drawing((300, 300), "wedge", yellow).save(root / "food/lemon_slice.png")
    _drawing((300, 400), "ring", (220, 20, 20, 255)).save(root / "party/balloon_red.png")
    _drawing((300, 400), "cross", (20, 20, 220, 255)).save(root / "party/balloon_long.png")
    # a near-copy of lemon.png: the same drawing at half the size
    _drawing((200, 150), "ellipse", yellow).save(root / "food/lemon_small.png")
    for i in range(4):  # four distinct opaque drawings of one noisy class
        _drawing((240, 200), f"stripes-{i + 2}", (40 * i, 120, 200), "RGB").save(
            root / f"toys/teddy_bear_{i}.png")
    (root / "special/teddy_bear_0.png").write_bytes(
        (root / "toys/teddy_bear_0.png").read_bytes())  # pixel-identical copy
    (root / "toys/teddy_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _drawing((2000, 1000), "cross", (10, 200, 10, 255)).save(root / "special/teddy_poster.png")
    curation = tmp_path / "curation.tsv"
    curation.write_text("# test curation\nclass\toriginal_path\n"
                        "lemon\tfood/lemon.png\nlemon\tfood/lemon_slice.png\n"
                        "balloon\tparty/balloon_red.png\n", encoding="utf-8")
    return root, curation


def _build(make_demo, root, curation, out, **kw):
    enc = make_demo.Encoding(max_side=64, max_pixels=1_500_000, min_palette_psnr=35.0)
    rows = make_demo.read_curation(str(curation))
    curated = make_demo.curated_images(str(root), rows, enc)
    classes = {imagenet.find(folder).index for folder, _ in rows}
    options = make_demo.selection_options(["openclipart_authors", "colors", "style"],
                                          make_demo.class_words(classes), 2)
    args = dict(num_classes=5, min_per_class=2, max_per_class=8, max_images=100,
                near_duplicate_bits=40, progress=False)
    args.update(kw)
    noisy = make_demo.noisy_images(str(root), options, curated, enc, **args)
    make_demo.write_demo(str(out), list(curated) + noisy)
    return curated, noisy


def test_generator_builds_a_demo(make_demo, clipart, tmp_path):
    root, curation = clipart
    out = tmp_path / "demo"
    curated, noisy = _build(make_demo, root, curation, out)
    assert sorted(i.demo_path for i in curated) == [
        "curated/balloon/balloon_red.png", "curated/lemon/lemon.png",
        "curated/lemon/lemon_slice.png"]
    names = sorted(i.demo_path for i in noisy)
    # the curated class's other image is kept; the near-copy of lemon.png, the
    # pixel-identical teddy copy, the broken file and the oversized poster are not
    assert "noisy/party/balloon_long.png" in names
    assert "noisy/food/lemon_small.png" not in names
    assert sum(n.endswith("teddy_bear_0.png") for n in names) == 1
    assert not any("broken" in n or "poster" in n for n in names)
    assert sum("teddy_bear" in n for n in names) == 4
    for image in curated + noisy:
        with Image.open(out / image.demo_path) as im:
            assert max(im.size) <= 64
    with Image.open(out / "curated/lemon/lemon.png") as im:  # margins trimmed, alpha kept
        rgba = im.convert("RGBA")
    assert rgba.getchannel("A").getextrema() == (0, 255)
    assert abs(rgba.width / rgba.height - 200 / 180) < 0.1  # the ellipse, not the page
    with open(out / "SOURCES.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == len(curated) + len(noisy)
    lemon = next(r for r in rows if r["demo_path"] == "curated/lemon/lemon.png")
    assert lemon["original_sha256"] == hashlib.sha256(
        (root / "food/lemon.png").read_bytes()).hexdigest()


def test_generator_is_deterministic_and_replaces_old_output(make_demo, clipart, tmp_path):
    root, curation = clipart
    a, b = tmp_path / "a", tmp_path / "b"
    (b / "noisy").mkdir(parents=True)
    (b / "noisy" / "stale.png").write_bytes(b"old")
    (b / "README.md").write_text("kept")
    _build(make_demo, root, curation, a)
    _build(make_demo, root, curation, b)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_b == sorted(files_a + [b.joinpath("README.md").relative_to(b)])
    for p in files_a:
        assert (a / p).read_bytes() == (b / p).read_bytes(), p
    assert (b / "README.md").read_text() == "kept"


def test_generator_caps_classes(make_demo, clipart, tmp_path):
    root, curation = clipart
    _, noisy = _build(make_demo, root, curation, tmp_path / "demo", max_per_class=2)
    assert sum("teddy_bear" in i.demo_path for i in noisy) == 2


def test_generator_drops_classes_below_the_minimum(make_demo, clipart, tmp_path):
    root, curation = clipart
    _, noisy = _build(make_demo, root, curation, tmp_path / "demo", min_per_class=5)
    # 4 decodable distinct teddies < 5: gone; the curated class's image stays
    assert [i.demo_path for i in noisy] == ["noisy/party/balloon_long.png"]


def test_curation_rejects_unknown_or_synonym_class(make_demo, tmp_path):
    from illustration_tl.errors import UserError

    bad = tmp_path / "curation.tsv"
    bad.write_text("class\toriginal_path\nnot_a_class_xyz\tfood/x.png\n", encoding="utf-8")
    with pytest.raises(UserError, match="not_a_class_xyz"):
        make_demo.read_curation(str(bad))
    bad.write_text("class\toriginal_path\ncellphone\toffice/x.png\n", encoding="utf-8")
    with pytest.raises(UserError, match="cellular telephone"):  # a synonym, not the name
        make_demo.read_curation(str(bad))


def test_palette_encoding_is_close_and_keeps_alpha(make_demo):
    # drawn large and downscaled: anti-aliased edges, like real clip art
    im = _drawing((480, 360), "ring", (200, 120, 30, 255)).resize(
        (120, 90), Image.Resampling.LANCZOS)
    png = make_demo.encode_png(im, 35.0)
    from io import BytesIO

    out = Image.open(BytesIO(png))
    assert out.mode == "P"  # flat drawing: the palette PNG is smaller and close
    assert len(png) < len(make_demo.encode_png(im, 0))
    assert make_demo.psnr(im, out) >= 35.0
    assert out.convert("RGBA").getchannel("A").getextrema() == (0, 255)
    exact = Image.open(BytesIO(make_demo.encode_png(im, 0)))
    assert exact.convert("RGBA").tobytes() == im.tobytes()
