"""The tf.data input pipeline, and the build/stats commands on the dummy dataset."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from illustration_tl.datasets import input_pipeline
from illustration_tl.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CURATED_FLAT = os.path.join(REPO, "illustration_tl", "datasets", "illustrations", "dummy_data",
                            "curated_flat")
VGG_MEANS_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def _white_dataset(n=4, height=10, width=6):
    images = np.full((n, height, width, 3), 255, np.uint8)
    return tf.data.Dataset.from_tensor_slices({
        "image": images, "label": np.arange(n, dtype=np.int64),
        "file_name": np.array([f"f{i}.png" for i in range(n)])})


def _batches(ds):
    return [tuple(np.asarray(t) for t in batch) for batch in ds]


def test_resize_squash_and_pad():
    image = np.zeros((2, 4, 3), np.uint8)  # black, twice as wide as tall
    squash = input_pipeline.resize(image, 8)
    assert squash.dtype == tf.float32 and squash.shape == (8, 8, 3)
    assert float(tf.reduce_max(squash)) == 0.0
    padded = input_pipeline.resize(image, 8, mode="pad").numpy()
    # 4x4 after padding one white row above and below, then doubled.
    assert padded[0].min() == 255 and padded[-1].min() == 255 and padded[4].max() == 0
    batch = input_pipeline.resize(np.stack([image, image]), 8, mode="pad")
    assert batch.shape == (2, 8, 8, 3)
    with pytest.raises(UserError, match="resize_mode"):
        input_pipeline.resize(image, 8, mode="crop")


def test_make_dataset_applies_vgg_caffe_preprocessing():
    ds = input_pipeline.make_dataset(_white_dataset(), backbone="vgg19", image_size=16,
                                     batch_size=3, training=False)
    (images, labels), (rest, rest_labels) = _batches(ds)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32 and list(labels) == [0, 1, 2] and list(rest_labels) == [3]
    # white RGB -> BGR minus the ImageNet means (caffe mode)
    np.testing.assert_allclose(images[0, 0, 0], 255 - VGG_MEANS_BGR, atol=1e-3)


def test_with_file_names_and_drop_remainder():
    ds = input_pipeline.make_dataset(_white_dataset(5), backbone="vgg16", image_size=8,
                                     batch_size=2, training=False, with_file_names=True,
                                     drop_remainder=True)
    batches = _batches(ds)
    assert len(batches) == 2 and all(len(b) == 3 for b in batches)
    assert [f.decode() for f in batches[0][2]] == ["f0.png", "f1.png"]


def _run(seed, **kw):
    source = input_pipeline.synthetic_dataset(24, 3, 32, seed=1)
    ds = input_pipeline.make_dataset(source, backbone="vgg19", image_size=24, batch_size=8,
                                     training=True, augment=True, seed=seed,
                                     deterministic=True, with_file_names=True, **kw)
    return [_batches(ds) for _ in range(2)]  # two epochs


def test_training_is_deterministic_per_seed_and_reshuffles_each_epoch():
    first, again = _run(0), _run(0)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x[0], y[0])
            np.testing.assert_array_equal(x[2], y[2])
    epoch1 = np.concatenate([b[2] for b in first[0]])
    epoch2 = np.concatenate([b[2] for b in first[1]])
    assert sorted(epoch1) == sorted(epoch2) and list(epoch1) != list(epoch2)
    other = _run(1)
    assert list(np.concatenate([b[2] for b in other[0]])) != list(epoch1)


def test_augmentation_crops_and_mirrors():
    # One asymmetric image repeated: random crops/flips must produce different outputs.
    image = np.full((40, 40, 3), 255, np.uint8)
    image[:, :10] = 0
    source = tf.data.Dataset.from_tensors({"image": image, "label": np.int64(0)}).repeat(16)
    ds = input_pipeline.make_dataset(source, backbone="vgg19", image_size=32, batch_size=16,
                                     training=True, augment=True, seed=3)
    (images, _), = _batches(ds)
    assert images.shape == (16, 32, 32, 3)
    left_dark = images[:, :, 0, 0].mean(axis=1) < 0
    assert left_dark.any() and (~left_dark).any()  # some mirrored, some not
    assert len({img.tobytes() for img in images}) > 2


def test_cache_and_encoded_images_give_the_same_pixels():
    def run(encoded, cache):
        source = input_pipeline.synthetic_dataset(6, 2, 20, seed=4, encoded=encoded)
        ds = input_pipeline.make_dataset(source, backbone="vgg19", image_size=16,
                                         batch_size=6, training=False, cache=cache)
        return _batches(ds)[0][0]

    plain = run(False, False)
    np.testing.assert_allclose(run(True, False), plain, atol=1e-4)
    np.testing.assert_allclose(run(False, True), plain, atol=1e-4)


def test_input_context_shards_examples_between_pipelines():
    names = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        ds = input_pipeline.make_dataset(_white_dataset(8), backbone="vgg19", image_size=8,
                                         batch_size=4, training=False, with_file_names=True,
                                         input_context=context)
        batches = _batches(ds)
        assert all(len(b[0]) == 2 for b in batches)  # per-replica batch = 4 / 2
        names.append({f for b in batches for f in b[2]})
    assert not names[0] & names[1] and len(names[0] | names[1]) == 8


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib

    builder_lib.build("curated", CURATED_FLAT, data_dir)
    return data_dir


def test_load_split_feeds_make_dataset(built):
    ds, info = input_pipeline.load_split("illustrations/curated", "train", built)
    assert input_pipeline.class_names(info) == ["flower", "hammer", "harp"]
    assert input_pipeline.imagenet_indices(info) == [-1, 587, 594]
    batches = _batches(input_pipeline.make_dataset(ds, backbone="vgg19", image_size=32,
                                                   batch_size=64, training=False))
    assert batches[0][0].shape == (13, 32, 32, 3)
    encoded, _ = input_pipeline.load_split("illustrations/curated", "train", built,
                                           decode_images=False)
    assert next(iter(encoded))["image"].dtype == tf.string


def test_load_split_errors_name_the_fix(built, tmp_path):
    with pytest.raises(UserError, match="--split"):
        input_pipeline.load_split("illustrations/curated", "training", built)
    with pytest.raises(UserError, match="not built"):
        input_pipeline.load_split("illustrations/curated", "train", str(tmp_path))
    with pytest.raises(UserError, match="not found"):
        input_pipeline.load_split("illustrations/nonexistent", "train", built)


def test_label_counts_match_the_splits(built):
    info, counts = input_pipeline.label_counts("illustrations/curated", built)
    assert {s: int(c.sum()) for s, c in counts.items()} == {
        s: info.splits[s].num_examples for s in info.splits}
    table = input_pipeline.format_counts(info, counts)
    assert "n03495258" in table and table.splitlines()[-2].split()[-1] == "27"


@pytest.mark.slow
def test_build_and_stats_commands(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "illustration_tl.cli", "build", "--config=noisy",
           f"--manual_dir={CURATED_FLAT}", f"--data_dir={tmp_path}", "--min_images_per_class=2"]
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert bad.returncode == 2 and "--name" in bad.stderr  # custom options need a name
    good = subprocess.run(cmd + ["--name=tiny", "--config=curated"], capture_output=True,
                          text=True, cwd=REPO, env=env)
    assert good.returncode == 0, good.stderr[-2000:]
    assert "examples: test" in good.stdout
    stats = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "stats",
                            "--dataset=illustrations/tiny", f"--data_dir={tmp_path}",
                            "--skipped"], capture_output=True, text=True, cwd=REPO, env=env)
    assert stats.returncode == 0, stats.stderr[-2000:]
    assert "hammer" in stats.stdout and "truncated" in stats.stdout
