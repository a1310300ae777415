"""Tests of the `illustrations` builder on dummy_data/ (curated in both layouts, noisy)."""

import collections
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib

DUMMY = os.path.join(os.path.dirname(__file__), "dummy_data")


class CuratedFlatTest(tfds.testing.DatasetBuilderTestCase):
    """Flat <class>/ layout with the hard cases mixed in: 3 broken files are skipped."""

    DATASET_CLASS = builder_lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["curated"]
    EXAMPLE_DIR = os.path.join(DUMMY, "curated_flat")
    SPLITS = {"train": 13, "validation": 6, "test": 8}
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False
    SKIP_CHECKSUMS = True


class CuratedAuthorsTest(tfds.testing.DatasetBuilderTestCase):
    """Authors' train/ + val/ layout: val is test, 20% of train is validation."""

    DATASET_CLASS = builder_lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["curated"]
    EXAMPLE_DIR = os.path.join(DUMMY, "curated_authors")
    SPLITS = {"train": 13, "validation": 2, "test": 8}
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False
    SKIP_CHECKSUMS = True


class NoisyTest(tfds.testing.DatasetBuilderTestCase):
    """Openclipart files + an Iconify collection, classes with >= 10 images kept."""

    DATASET_CLASS = builder_lib.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["noisy"]
    EXAMPLE_DIR = os.path.join(DUMMY, "noisy")
    SPLITS = {"train": 16, "validation": 3, "test": 4}
    MOCK_OUT_FORBIDDEN_OS_FUNCTIONS = False
    SKIP_CHECKSUMS = True


def _build(config, manual_dir, data_dir):
    builder = builder_lib.Builder(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def _examples(builder):
    """{file_name: (split, label name, image)} for every example."""
    names = builder.info.features["label"].names
    out = {}
    for split in builder.info.splits:
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            key = (ex["file_name"].decode(), names[ex["label"]])
            out[key] = (split, ex["image"], int(ex["imagenet_index"]))
    return out


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    builder = _build("curated", os.path.join(DUMMY, "curated_flat"),
                     tmp_path_factory.mktemp("flat"))
    return builder, _examples(builder)


def test_curated_classes_carry_imagenet_indices(flat):
    builder, examples = flat
    assert builder.info.features["label"].names == ["flower", "hammer", "harp"]
    # flower is not an ImageNet class; hammer and harp are (wnids of paper Table 1).
    assert builder.info.metadata["imagenet_indices"] == [-1, 587, 594]
    assert builder.info.metadata["imagenet_wnids"] == ["", "n03481172", "n03495258"]
    assert examples[("hammer/hammer_01.png", "hammer")][2] == 587
    assert examples[("flower/flower_01.png", "flower")][2] == -1


def test_hard_cases_are_decoded_or_skipped_and_listed(flat):
    builder, examples = flat
    decoded = {f for f, _ in examples}
    for name in ["harp/rgba_transparent.png", "harp/palette_transparent.png",
                 "hammer/grayscale.png", "hammer/one_bit.png", "flower/cmyk.jpg",
                 "flower/png_named.jpg", "flower/huge_6000px.png"]:
        assert name in decoded
    with open(os.path.join(builder.data_dir, builder_lib.SKIPPED_FILE)) as f:
        rows = dict(line.rstrip("\n").split("\t") for line in f.readlines()[1:])
    assert set(rows) == {"harp/zero_byte.png", "hammer/truncated.png", "flower/not_an_image.png"}
    assert "empty" in rows["harp/zero_byte.png"]
    assert "truncated" in rows["hammer/truncated.png"]
    assert "not an image" in rows["flower/not_an_image.png"]
    assert builder.info.metadata["files_skipped"] == 3


def test_stored_images_are_rgb_white_background_and_bounded(flat):
    _, examples = flat
    for (name, _), (_, image, _) in examples.items():
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert max(image.shape[:2]) <= 512, name
    rgba = examples[("harp/rgba_transparent.png", "harp")][1]
    corners = rgba[[0, 0, -1, -1], [0, -1, 0, -1]]
    np.testing.assert_array_equal(corners, np.full((4, 3), 255))
    assert max(examples[("flower/huge_6000px.png", "flower")][1].shape[:2]) == 512


def test_duplicates_never_straddle_splits(flat):
    builder, examples = flat
    split = {f: s for (f, _), (s, _, _) in examples.items()}
    # byte-identical copy, and pixel-identical re-encoded copy
    assert split["hammer/hammer_01_copy.png"] == split["hammer/hammer_01.png"]
    assert split["flower/flower_01_reencoded.png"] == split["flower/flower_01.png"]
    by_pixels = collections.defaultdict(set)
    for (_, _), (s, image, _) in examples.items():
        by_pixels[image.tobytes() + bytes(str(image.shape), "ascii")].add(s)
    assert all(len(s) == 1 for s in by_pixels.values())
    dups = builder.info.metadata["duplicates"]
    assert dups["byte_identical_duplicates"] == 1
    assert dups["pixel_identical_duplicates"] == 1


def test_two_builds_give_identical_splits(flat, tmp_path):
    # Copy the manual dir elsewhere: splits depend on content, not on paths or order.
    manual = tmp_path / "manual"
    shutil.copytree(os.path.join(DUMMY, "curated_flat"), manual)
    again = _examples(_build("curated", manual, tmp_path / "data"))
    first = flat[1]
    assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in first.items()}


def test_authors_layout_keeps_test_and_moves_duplicates_to_test(tmp_path):
    builder = _build("curated", os.path.join(DUMMY, "curated_authors"), tmp_path)
    examples = _examples(builder)
    for (name, _), (split, _, _) in examples.items():
        if name.startswith("val/"):
            assert split == "test", name
        elif not name.endswith("_dup.png"):
            assert split in ("train", "validation"), name
    # train/harp/harp_05_dup.png is val/harp/harp_05.png: it joins the test split.
    assert examples[("train/harp/harp_05_dup.png", "harp")][0] == "test"
    assert builder.info.metadata["moved_to_held_out_split_as_duplicates"] == 1
    assert builder.info.metadata["layout"] == "authors"


def test_noisy_labels_are_wnids_with_matched_words(tmp_path):
    builder = _build("noisy", os.path.join(DUMMY, "noisy"), tmp_path)
    names = builder.info.features["label"].names
    assert names == ["n02051845", "n04398044"]  # pelican, teapot (>= 10 images each)
    assert builder.info.metadata["imagenet_indices"] == [144, 849]
    seen = {}
    for split in builder.info.splits:
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            seen[ex["file_name"].decode()] = (names[ex["label"]], ex["matched_words"].decode())
    assert seen["tiny/pelican-3"] == ("n02051845", "pelican")
    assert seen["clipart/pelican_drawing.svg"] == ("n02051845", "pelican")
    assert seen["clipart/teapot_01.png"] == ("n04398044", "teapot")
    assert "tiny/old-name" not in seen  # hidden icons are left out
    assert not any(f.startswith("clipart/umbrella") for f in seen)  # 9 < 10 images: dropped
    assert builder.info.metadata["classes_dropped"] >= 1
    with open(os.path.join(builder.data_dir, builder_lib.SKIPPED_FILE)) as f:
        assert "clipart/broken_umbrella.png\t" in f.read()


def test_custom_noisy_config_keeps_small_classes(tmp_path):
    config = builder_lib.IllustrationsConfig(name="noisy_min3", min_images_per_class=3,
                                             phrase_mode=True, iconify_aliases=True)
    assert config.source == "noisy"
    builder = _build(config, os.path.join(DUMMY, "noisy"), tmp_path)
    names = builder.info.features["label"].names
    assert "n04507155" in names  # umbrella now kept
    files = set()
    for split in builder.info.splits:
        files |= {ex["file_name"].decode() for ex in tfds.as_numpy(builder.as_dataset(split))}
    assert "tiny/mirror-pelican-1" in files
    # Loads back from files under the custom name (not a registered config).
    ds = tfds.load("illustrations/noisy_min3", split="train", data_dir=str(tmp_path))
    assert sum(1 for _ in ds) == builder.info.splits["train"].num_examples


def test_too_few_images_for_three_splits_is_a_clear_error(tmp_path):
    manual = tmp_path / "manual" / "harp"
    manual.mkdir(parents=True)
    shutil.copy(os.path.join(DUMMY, "curated_flat", "harp", "harp_01.png"), manual)
    with pytest.raises(ValueError, match="only one class .'harp'. has usable images"):
        _build("curated", tmp_path / "manual", tmp_path / "data")
    other = tmp_path / "manual" / "flower"
    other.mkdir()
    flower = sorted(os.listdir(os.path.join(DUMMY, "curated_flat", "flower")))[0]
    shutil.copy(os.path.join(DUMMY, "curated_flat", "flower", flower), other)
    with pytest.raises(ValueError, match="would be empty"):
        _build("curated", tmp_path / "manual", tmp_path / "data")


@pytest.mark.slow
def test_tfds_build_command_line_then_tfds_load(tmp_path):
    """The README's raw command (`tfds build illustrations --imports=...`, the
    tfds-cli extra) from a folder outside the checkout, then `tfds.load`."""
    tfds_cli = os.path.join(os.path.dirname(sys.executable), "tfds")
    cmd = [tfds_cli if os.path.exists(tfds_cli) else "tfds", "build", "illustrations",
           "--imports=illustration_tl.datasets.illustrations",
           "--config=curated", f"--manual_dir={os.path.join(DUMMY, 'curated_authors')}",
           f"--data_dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    ds = tfds.load("illustrations/curated", split="test", data_dir=str(tmp_path))
    assert sum(1 for _ in ds) == 8
    assert os.path.exists(tmp_path / "illustrations" / "curated" / "1.0.0" / "skipped.tsv")


if __name__ == "__main__":
    tfds.testing.test_main()


def test_bounded_writer_memory_spills_to_disk_and_keeps_examples_and_order(tmp_path,
                                                                          monkeypatch):
    """With the writer's memory bound at 0 every example goes through TFDS's on-disk
    buckets (counted), and the dataset is the in-memory build's, in the same order."""
    from tensorflow_datasets.core import shuffle

    def ordered(builder):
        return {s: [(ex["file_name"], int(ex["label"]), ex["image"].tobytes())
                    for ex in tfds.as_numpy(builder.as_dataset(split=s))]
                for s in builder.info.splits}

    noisy = os.path.join(DUMMY, "noisy")
    in_memory = _build("noisy", noisy, tmp_path / "memory")
    spilled_adds = []
    original = shuffle.Shuffler._add_to_bucket
    monkeypatch.setattr(shuffle.Shuffler, "_add_to_bucket",
                        lambda self, *a: (spilled_adds.append(1), original(self, *a)))
    bounded = builder_lib.Builder(config="noisy", data_dir=str(tmp_path / "bounded"))
    bounded.shuffle_memory_mb = 0
    bounded.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=noisy))
    assert len(spilled_adds) == sum(bounded.info.splits[s].num_examples
                                    for s in bounded.info.splits) == 23
    assert shuffle.MAX_MEM_BUFFER_SIZE == 1000 << 20      # restored after the build
    assert ordered(bounded) == ordered(in_memory)
