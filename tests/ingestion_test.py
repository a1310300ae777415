"""Image ingestion, content-hash splits and Iconify collections (no TensorFlow needed)."""

import io
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from illustration_tl.datasets import batch_ingestion, iconify, ingestion, splits

HARD = os.path.join(os.path.dirname(__file__), "fixtures", "hard_cases")
DUMMY_NOISY = os.path.join(os.path.dirname(__file__), "..", "illustration_tl", "datasets",
                           "illustrations", "dummy_data", "noisy")
BROKEN = {"zero_byte.png": "empty", "truncated.png": "truncated",
          "not_an_image.png": "not an image"}


def _png(image: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **kw)
    return out.getvalue()


def _hard_cases():
    return sorted(f for f in os.listdir(HARD) if f != "SOURCES.txt")


@pytest.mark.parametrize("name", _hard_cases())
def test_every_hard_case_decodes_to_rgb_or_raises_ingestion_error(name):
    path = os.path.join(HARD, name)
    if name in BROKEN:
        with pytest.raises(ingestion.IngestionError, match=BROKEN[name]):
            ingestion.load_image(path)
        return
    image = ingestion.load_image(path, max_side=512)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 0 < max(image.shape[:2]) <= 512


def test_transparent_rgba_comes_out_on_white_or_chosen_background():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200               # red under a fully transparent background...
    rgba[1:3, 2:4] = (0, 0, 255, 255)  # ...and an opaque blue square
    data = _png(Image.fromarray(rgba, "RGBA"))
    out = ingestion.load_image(data)
    assert (out[0, 0] == 255).all() and (out[1, 2] == (0, 0, 255)).all()
    black = ingestion.load_image(data, background=(0, 0, 0))
    assert (black[0, 0] == 0).all()
    assert (ingestion.load_image(data, background=None)[0, 0] == (200, 0, 0)).all()


def test_half_transparent_pixels_blend_with_the_background():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[...] = (0, 0, 0, 128)
    out = ingestion.load_image(_png(Image.fromarray(rgba, "RGBA")))
    assert np.all(np.abs(out.astype(int) - 127) <= 1)


def test_fixture_transparency_cases_have_white_corners():
    for name in ["rgba_transparent.png", "palette_transparent.png"]:
        image = ingestion.load_image(os.path.join(HARD, name))
        corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
        np.testing.assert_array_equal(corners, np.full((4, 3), 255), err_msg=name)
    assert Image.open(os.path.join(HARD, "palette_transparent.png")).mode == "P"


def test_format_is_detected_from_bytes_not_extension():
    with open(os.path.join(HARD, "png_named.jpg"), "rb") as f:
        data = f.read()
    assert ingestion.sniff_format(data) == "png"
    with open(os.path.join(HARD, "cmyk.jpg"), "rb") as f:
        assert ingestion.sniff_format(f.read()) == "jpeg"
    assert ingestion.sniff_format(b"GIF89a....") == "gif"
    assert ingestion.sniff_format(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert ingestion.sniff_format(b"  <?xml version='1.0'?><svg></svg>") == "svg"
    assert ingestion.sniff_format(b"hello") is None
    assert ingestion.load_image(data).shape[2] == 3


def test_modes_convert_to_rgb_faithfully():
    gray = np.asarray(Image.open(os.path.join(HARD, "grayscale.png")))
    out = ingestion.load_image(os.path.join(HARD, "grayscale.png"))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))
    # 16-bit grayscale is scaled (x/257), not clipped to 255.
    g16 = ingestion.load_image(os.path.join(HARD, "gray16.png"))
    assert g16.min() < 200 and g16.max() == 255 and (g16[..., 0] == g16[..., 2]).all()
    one_bit = ingestion.load_image(os.path.join(HARD, "one_bit.png"))
    assert set(np.unique(one_bit)) <= {0, 255}
    cmyk = ingestion.load_image(os.path.join(HARD, "cmyk.jpg"))
    assert cmyk[0, 0].min() > 240  # white paper stays white, not inverted


def test_animated_gif_gives_its_first_frame():
    path = os.path.join(HARD, "animated.gif")
    with Image.open(path) as im:
        assert im.n_frames == 2
        first = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(ingestion.load_image(path), first)


def test_decompression_bomb_guard_refuses_before_decoding():
    path = os.path.join(HARD, "huge_6000px.png")
    with pytest.raises(ingestion.IngestionError, match="decompression-bomb guard.*6000x6000"):
        ingestion.load_image(path, max_pixels=1_000_000)
    assert ingestion.load_image(path, max_side=300).shape == (300, 300, 3)


def test_max_side_downscales_but_never_upscales():
    small = _png(Image.new("RGB", (40, 20), "red"))
    assert ingestion.load_image(small, max_side=512).shape == (20, 40, 3)
    assert ingestion.load_image(small, max_side=10).shape == (5, 10, 3)


def test_svg_is_rasterized_at_svg_size_on_white():
    path = os.path.join(HARD, "vector_pelican.svg")
    image = ingestion.load_image(path, svg_size=128)
    assert image.shape == (96, 128, 3)  # viewBox 64x48
    assert (image[0, 0] == 255).all() and image.min() < 100
    icon = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 2 2">' \
           b'<rect width="1" height="2" fill="currentColor"/></svg>'
    out = ingestion.load_image(icon, svg_size=4)
    assert (out[:, :2] == 0).all() and (out[:, 2:] == 255).all()
    with pytest.raises(ingestion.IngestionError, match="SVG"):
        ingestion.load_image(b"<svg xmlns='http://www.w3.org/2000/svg'><path d='M0 0")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM",
                        b"<svg", b"II*\x00", b"\x1f\x8b"]), st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_ingestion_error(magic, tail):
    try:
        image = ingestion.load_image(magic + tail)
    except ingestion.IngestionError as e:
        assert e.reason and "\n" not in e.reason
    else:
        assert image.ndim == 3 and image.shape[2] == 3


def test_ingest_never_raises_and_dedups_pixel_identical_files(tmp_path):
    red = Image.new("RGB", (8, 8), "red")
    a, b = _png(red, compress_level=9), _png(red, compress_level=0)
    assert a != b
    options = batch_ingestion.IngestOptions(max_side=512)
    ra = batch_ingestion.ingest("a", a, options, str(tmp_path))
    rb = batch_ingestion.ingest("b", b, options, str(tmp_path))
    assert ra.pixel_hash == rb.pixel_hash and ra.byte_hash != rb.byte_hash
    assert ra.png_path == rb.png_path and len(os.listdir(tmp_path)) == 1
    np.testing.assert_array_equal(ingestion.load_image(ra.png_path), np.asarray(red))
    missing = batch_ingestion.ingest("m", str(tmp_path / "missing.png"), options,
                                     str(tmp_path))
    assert missing.error and "cannot read" in missing.error


def test_ingest_many_in_processes_matches_serial(tmp_path):
    tasks = [(n, os.path.join(HARD, n)) for n in _hard_cases()]
    options = batch_ingestion.IngestOptions(max_side=64)
    serial = list(batch_ingestion.ingest_many(tasks, options, str(tmp_path / "s"),
                                              num_workers=1))
    parallel = list(batch_ingestion.ingest_many(tasks, options, str(tmp_path / "p"),
                                                num_workers=2, min_parallel=1, chunk_size=4))
    assert [r.key for r in parallel] == [k for k, _ in tasks]
    strip = lambda r: (r.key, r.pixel_hash, r.byte_hash, r.error)  # noqa: E731
    assert [strip(r) for r in parallel] == [strip(r) for r in serial]
    assert sum(r.error is not None for r in serial) == len(BROKEN)


# --- splits ------------------------------------------------------------------


def test_splits_are_deterministic_and_close_to_64_16_20():
    hashes = [f"{i:064x}" for i in range(20000)]
    assigned = [splits.assign(h) for h in hashes]
    assert assigned == [splits.assign(h) for h in hashes]
    for name, fraction in zip(splits.SPLITS, splits.PAPER_FRACTIONS):
        assert abs(assigned.count(name) / len(hashes) - fraction) < 0.015
    carved = [splits.carve_validation(h, 0.2) for h in hashes[:5000]]
    assert abs(carved.count("validation") / 5000 - 0.2) < 0.03
    assert assigned != [splits.assign(h, seed=1) for h in hashes]


def test_split_fractions_are_validated():
    with pytest.raises(ValueError, match="summing to 1"):
        splits.assign("ab", (0.5, 0.5, 0.5))
    assert splits.assign("ab", (0.0, 0.0, 1.0)) == "test"


def test_duplicate_report_counts_byte_and_pixel_duplicates():
    report = splits.duplicate_report([("a", "b1", "p1"), ("a2", "b1", "p1"), ("c", "b2", "p1"),
                                      ("d", "b3", "p2")])
    assert (report.byte_duplicates, report.pixel_duplicates) == (1, 1)
    assert report.groups == {"p1": ["a", "a2", "c"]}
    assert "1 byte-identical" in report.format()


# --- Iconify -----------------------------------------------------------------


def _collection(prefix="t", license_spdx="MIT", category="Thematic"):
    return {"prefix": prefix,
            "info": {"name": "T", "license": {"title": license_spdx, "spdx": license_spdx},
                     "category": category},
            "icons": {"half": {"body": '<rect width="8" height="16" fill="currentColor"/>'},
                      "gone": {"body": "<g/>", "hidden": True}},
            "aliases": {"mirrored": {"parent": "half", "hFlip": True},
                        "turned": {"parent": "mirrored", "rotate": 1}},
            "width": 16, "height": 16}


def test_iconify_icons_are_named_set_slash_icon_and_hidden_ones_left_out():
    names = [i.name for i in iconify.icons(_collection())]
    assert names == ["t/half"]
    with_aliases = iconify.IconifyFilter(include_aliases=True, include_hidden=True)
    assert [i.name for i in iconify.icons(_collection(), with_aliases)] == [
        "t/gone", "t/half", "t/mirrored", "t/turned"]


def test_iconify_transformations_render_as_expected():
    data = _collection()
    svgs = {i.name: i.svg for i in iconify.icons(data, iconify.IconifyFilter(
        include_aliases=True))}
    half = ingestion.load_image(svgs["t/half"].encode(), svg_size=16)
    mirrored = ingestion.load_image(svgs["t/mirrored"].encode(), svg_size=16)
    assert (half[:, :8] == 0).all() and (half[:, 8:] == 255).all()
    np.testing.assert_array_equal(mirrored, half[:, ::-1])
    turned = ingestion.load_image(svgs["t/turned"].encode(), svg_size=16)
    np.testing.assert_array_equal(turned, np.rot90(mirrored, k=-1))


def test_iconify_filters_by_set_category_and_license():
    mit, nc = _collection("a"), _collection("b", "CC-BY-NC-4.0", "Logos")
    f = iconify.IconifyFilter(exclude_licenses=("non-commercial",))
    assert iconify.excluded_reason(mit, f) is None and "non-commercial" in \
        iconify.excluded_reason(nc, f)
    assert iconify.excluded_reason(nc, iconify.IconifyFilter(exclude_categories=("logos",)))
    assert iconify.excluded_reason(mit, iconify.IconifyFilter(include_sets=("b",)))
    assert iconify.excluded_reason(mit, iconify.IconifyFilter(exclude_sets=("a",)))
    assert iconify.excluded_reason(mit, iconify.IconifyFilter(exclude_licenses=("mit",)))
    assert list(iconify.icons(nc, f)) == []


def test_iconify_reads_collections_and_ignores_other_json(tmp_path):
    found = iconify.find_collections([DUMMY_NOISY])
    assert [os.path.basename(p) for p in found] == ["package.json", "tiny-icons.json"]
    assert iconify.read_collection(found[0]) is None
    tiny = iconify.read_collection(found[1])
    assert tiny["info"]["license"]["spdx"] == "CC0-1.0"
    assert len(list(iconify.icons(tiny))) == 28
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable JSON"):
        iconify.read_collection(str(bad))
    (tmp_path / "ok.json").write_text(json.dumps(_collection()))
    assert iconify.find_collections([str(tmp_path)]) == [str(bad), str(tmp_path / "ok.json")]
