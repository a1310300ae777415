"""features/extraction.py: all resize modes of a split in one pass, square images' pad
rows copied from their squash rows, each mode resuming after its own shards."""

import io
import types

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from illustration_tl.datasets import input_pipeline  # noqa: E402
from illustration_tl.features import extraction  # noqa: E402
from illustration_tl.features import store as store_lib  # noqa: E402

SIZE = 24
BLOCKS = ["c1:avg", "c1:max"]
VIEWS = ["orig", "flip"]
SOURCE = types.SimpleNamespace(backbone="vgg16", image_size=SIZE)


def _png(rng, h, w) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _examples(n=7):
    rng = np.random.default_rng(0)
    shapes = [(30, 30), (20, 40), (33, 33), (50, 25), (16, 16), (41, 41), (18, 27)][:n]
    return tf.data.Dataset.from_tensor_slices({
        "image": [_png(rng, h, w) for h, w in shapes], "label": np.arange(n) % 3,
        "file_name": [f"img{i}.png" for i in range(n)]}), shapes


def _model():
    import keras

    x = keras.Input((SIZE, SIZE, 3))
    c = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.GlorotUniform(1))(x)
    return keras.Model(x, [keras.layers.GlobalAveragePooling2D()(c),
                           keras.layers.GlobalMaxPooling2D()(c)])


def _rows(ds, model):
    """Each mode's rows the plain way: make_dataset per mode, every image run."""
    out = {}
    for mode in ("squash", "pad"):
        per = []
        for images, _, _ in input_pipeline.make_dataset(
                ds, backbone="vgg16", image_size=SIZE, batch_size=3, training=False,
                resize_mode=mode, with_file_names=True):
            per.append(extraction._forward(lambda x: model(x, training=False), images,
                                           BLOCKS, VIEWS))
        out[mode] = {k: np.concatenate([p[k] for p in per]) for k in per[0]}
    return out


def _read(rows):
    parts = list(rows.read())
    return {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}, \
        [n for p in parts for n in p[2]]


def test_one_pass_gives_each_modes_rows_and_copies_square_images(tmp_path):
    ds, shapes = _examples()
    model = _model()
    want = _rows(ds, model)
    rows = {m: store_lib.ShardedRows(str(tmp_path / m), 2) for m in ("pad", "squash")}
    logged = []
    extraction.extract_split(model, BLOCKS, VIEWS, ds, SOURCE, len(shapes), rows, 3,
                             "features train", logged.append)
    square = [h == w for h, w in shapes]
    for mode in ("squash", "pad"):
        got, names = _read(rows[mode])
        assert names == [f"img{i}.png" for i in range(len(shapes))]
        for k in want[mode]:
            np.testing.assert_allclose(got[k], want[mode][k], rtol=1e-5, atol=1e-5)
    pad, _ = _read(rows["pad"])
    squash, _ = _read(rows["squash"])
    for k in pad:   # copied, not recomputed: bit-identical on square images only
        assert (pad[k][square] == squash[k][square]).all()
        assert not np.allclose(pad[k][~np.array(square)], squash[k][~np.array(square)])
    assert any("pad): 7 images x 2 views embedded" in line and
               f"{sum(square)} square images copied" in line for line in logged), logged


def test_each_mode_resumes_after_its_own_finished_shards(tmp_path):
    ds, shapes = _examples()
    model = _model()
    want = _rows(ds, model)
    first = {m: store_lib.ShardedRows(str(tmp_path / m), 2) for m in ("squash", "pad")}
    extraction.extract_split(model, BLOCKS, VIEWS, ds.take(4), SOURCE, 4, {
        "squash": first["squash"]}, 3, "f", None)
    extraction.extract_split(model, BLOCKS, VIEWS, ds.take(2), SOURCE, 2, {
        "pad": first["pad"]}, 3, "f", None)
    again = {m: store_lib.ShardedRows(str(tmp_path / m), 2) for m in ("squash", "pad")}
    assert (again["squash"].done, again["pad"].done) == (4, 2)
    logged = []
    extraction.extract_split(model, BLOCKS, VIEWS, ds, SOURCE, len(shapes), again, 3, "f",
                             logged.append)
    for mode, resumed in (("squash", 4), ("pad", 2)):
        got, names = _read(again[mode])
        assert names == [f"img{i}.png" for i in range(len(shapes))]
        for k in want[mode]:
            np.testing.assert_allclose(got[k], want[mode][k], rtol=1e-5, atol=1e-5)
        assert any(f"({mode}): {len(shapes) - resumed} images x 2 views embedded" in line
                   and f"{resumed} resumed from finished shards" in line
                   for line in logged), logged


def test_modes_run_after_the_twin_they_copy():
    assert extraction.ordered_modes(["pad", "squash"], {"pad": "squash"}) == ["squash", "pad"]
    assert extraction.ordered_modes(["pad"], {"pad": "squash"}) == ["pad"]
