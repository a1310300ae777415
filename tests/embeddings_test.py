"""Tests of embedding extraction and the sharded embeddings files (paper §6.1)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from illustration_tl.errors import UserError
from illustration_tl.features import embeddings, store
from illustration_tl.models import extractor

N, SIZE = 23, 16


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(6, activation="relu", name="fc2")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="predictions")(x))


def data(n=N, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-100, 100, (n, SIZE, SIZE, 3)).astype(np.float32)
    labels = (np.arange(n) % 3).astype(np.int32)
    names = np.array([f"class{i % 3}/img{i:03d}.png" for i in range(n)])
    return images, labels, names


def batches(images, labels, names, batch=5):
    return tf.data.Dataset.from_tensor_slices((images, labels, names)).batch(batch)


META = {"class_names": ["a", "b", "c"], "layer": "fc2", "image_size": SIZE,
        "backbone": "tiny", "preprocessing": "none", "dataset": "synthetic",
        "dataset_version": "0"}


def test_shards_equal_in_memory_embeddings(tmp_path):
    model, _ = extractor.pooled_embedding_model(tiny_model())
    images, labels, names = data()
    x_mem, y_mem, n_mem = embeddings.compute(model, batches(images, labels, names))
    np.testing.assert_allclose(x_mem, model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)

    out = tmp_path / "emb" / "test"
    meta = embeddings.write(model, batches(images, labels, names), str(out), META,
                            shard_size=7, progress_interval=0)
    # written in 4 shards of at most 7, kept as the feature store's one block `paper`
    assert sorted(os.listdir(out)) == ["000-squash_orig_paper.npy", "file_names.npy",
                                       "labels.npy", "metadata.json", "store.json"]
    fs = store.FeatureStore.load(str(out))
    assert fs.blocks == ["paper"] and list(fs.labels) == ["split"]
    assert isinstance(fs.block("split", "squash", "orig", "paper"), np.memmap)
    assert [len(y) for _, y, _ in embeddings.iter_shards(str(out))] == [N]
    loaded = embeddings.load(str(tmp_path / "emb"), "test")
    np.testing.assert_array_equal(loaded.x, x_mem)
    np.testing.assert_array_equal(loaded.y, y_mem)
    assert loaded.file_names == n_mem == names.tolist()
    assert loaded.x.dtype == np.float32 and loaded.y.dtype == np.int64
    assert loaded.class_names == ["a", "b", "c"]
    for key in ("layer", "image_size", "backbone", "preprocessing", "dataset",
                "dataset_version"):
        assert loaded.metadata[key] == META[key]
    assert meta["num_examples"] == N and meta["dim"] == 6 and meta["num_shards"] == 4
    assert meta["model_fingerprint"] == extractor.model_fingerprint(model)
    with open(out / "metadata.json") as f:
        assert json.load(f)["model_fingerprint"].startswith("sha256:")
    assert not [p for p in os.listdir(tmp_path / "emb") if p.startswith(".")]


def test_split_folders_of_earlier_releases_are_still_read(tmp_path):
    model, _ = extractor.pooled_embedding_model(tiny_model())
    images, labels, names = data()
    x, y, n = embeddings.compute(model, batches(images, labels, names))
    old = tmp_path / "old" / "test"
    old.mkdir(parents=True)
    for i, start in enumerate(range(0, N, 8)):
        np.savez(old / f"shard-{i:05d}.npz", embeddings=x[start:start + 8],
                 labels=y[start:start + 8], file_names=np.asarray(n[start:start + 8]))
    (old / "metadata.json").write_text(json.dumps(dict(META, num_examples=N, dim=6)))
    loaded = embeddings.load(str(tmp_path / "old"), "test")
    np.testing.assert_array_equal(loaded.x, x)
    assert loaded.file_names == n


def test_nan_in_a_written_store_is_one_line(tmp_path):
    model, _ = extractor.pooled_embedding_model(tiny_model())
    images, labels, names = data()
    out = tmp_path / "test"
    embeddings.write(model, batches(images, labels, names), str(out), META,
                     progress_interval=0)
    arr = np.load(out / "000-squash_orig_paper.npy", mmap_mode="r+")
    arr[3, 1] = np.nan
    arr.flush()
    with pytest.raises(UserError, match="1 rows of NaN or infinite values"):
        embeddings.load(str(out))


def test_fingerprint_tracks_the_weights():
    a, b = tiny_model(seed=0), tiny_model(seed=0)
    assert extractor.model_fingerprint(a) == extractor.model_fingerprint(b)
    b.get_layer("fc2").kernel.assign(b.get_layer("fc2").kernel * 2.0)
    assert extractor.model_fingerprint(a) != extractor.model_fingerprint(b)


def test_existing_split_is_kept_unless_overwrite(tmp_path):
    model, _ = extractor.pooled_embedding_model(tiny_model())
    images, labels, names = data()
    out = str(tmp_path / "test")
    embeddings.write(model, batches(images, labels, names), out, META, progress_interval=0)
    with pytest.raises(UserError, match="--overwrite"):
        embeddings.write(model, batches(images, labels, names), out, META)
    embeddings.write(model, batches(images[:4], labels[:4], names[:4]), out, META,
                     overwrite=True, progress_interval=0)
    assert embeddings.load(out).metadata["num_examples"] == 4


def test_an_interrupted_write_leaves_nothing_that_looks_done(tmp_path):
    model, _ = extractor.pooled_embedding_model(tiny_model())
    images, labels, names = data()

    def failing():
        yield from batches(images, labels, names).take(2)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        embeddings.write(model, failing(), str(tmp_path / "test"), META, shard_size=3)
    assert os.listdir(tmp_path) == []
    with pytest.raises(UserError, match="embed"):
        embeddings.load(str(tmp_path), "test")


def test_layer_choice_and_pooling():
    model = tiny_model()
    emb, layer = extractor.pooled_embedding_model(model)
    assert layer == "fc2" and emb.output.shape[-1] == 6
    emb, layer = extractor.pooled_embedding_model(model, "conv")
    assert layer == "gap(conv)" and emb.output.shape[-1] == 4
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    emb, layer = extractor.pooled_embedding_model(base)
    assert layer == "gap(block5_pool)" and tuple(emb.output.shape) == (None, 512)
    with pytest.raises(UserError, match="--layer"):
        extractor.pooled_embedding_model(model, "fc7")


def test_load_splits_concatenates_and_checks_consistency(tmp_path):
    model, _ = extractor.pooled_embedding_model(tiny_model())
    images, labels, names = data()
    embeddings.write(model, batches(images[:10], labels[:10], names[:10]),
                     str(tmp_path / "train"), META, progress_interval=0)
    embeddings.write(model, batches(images[10:], labels[10:], names[10:]),
                     str(tmp_path / "validation"), META, progress_interval=0)
    both = embeddings.load_splits(str(tmp_path), ["train", "validation"])
    assert len(both.y) == N and both.file_names == names.tolist()
    other, _ = extractor.pooled_embedding_model(tiny_model(seed=1))
    embeddings.write(other, batches(images, labels, names), str(tmp_path / "test"), META,
                     progress_interval=0)
    with pytest.raises(UserError, match="model_fingerprint"):
        embeddings.load_splits(str(tmp_path), ["train", "test"])
    with pytest.raises(UserError, match="splits present: test, train, validation"):
        embeddings.load(str(tmp_path), "nope")


def test_reading_stops_at_the_known_split_size(tmp_path):
    """With the exact size known, the dataset is never asked for a batch past the end
    (an autotuned tf.data pipeline idles there for about a batch's compute time)."""
    model, _ = extractor.pooled_embedding_model(tiny_model())
    images, labels, names = data()

    def exactly_n_then_explode():
        yield from batches(images, labels, names)
        raise AssertionError("asked for a batch past the end")

    meta = embeddings.write(model, exactly_n_then_explode(), str(tmp_path / "t"), META,
                            total=N, progress_interval=0)
    assert meta["num_examples"] == N
    x, _, _ = embeddings.compute(model, exactly_n_then_explode(), limit=N)
    assert len(x) == N
    with pytest.raises(AssertionError, match="past the end"):
        embeddings.compute(model, exactly_n_then_explode())
