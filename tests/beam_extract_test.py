"""``illustration-tl extract``: ``fit``'s feature extraction on Apache Beam (DirectRunner,
the ``tfds-cli`` extra). On three fixture classes at 32 px with random VGG16 weights, the
dataset written in two TFRecord files per split (so TFDS interleaves them when reading),
the Beam shards make the same store as the local extraction (every block, both views,
both resize modes, same file names, labels and order, within 1e-5), and ``fit`` run
afterwards embeds nothing: it finds every shard finished and completes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
CLASSES = ("bird", "flower", "house")
SETTINGS = {"weights": "none", "image_size": 32, "num_workers": 1,
            "resize_modes": ("squash", "pad"), "precision": "float32", "shard_size": 8}
FLAGS = ["--weights=none", "--image_size=32", "--num_workers=1", "--resize_modes=squash,pad",
         "--precision=float32", "--shard_size=8"]
FILES_PER_SPLIT = 2
TOLERANCE = 1e-5


def _two_files_per_split(monkeypatch) -> None:
    """TFDS writes every split of the build in two files (one if it has one example)."""
    from tensorflow_datasets.core.utils import shard_utils

    monkeypatch.setattr(shard_utils.ShardConfig, "get_number_shards",
                        lambda self, total_size, num_examples, uses_precise_sharding=True:
                        min(FILES_PER_SPLIT, num_examples))


def _local_store(run, out):
    """The local extraction (``fit``'s features stage body) of the run's dataset."""
    from illustration_tl.features import multilayer

    with open(run / "dataset" / "dataset.json", encoding="utf-8") as f:
        dataset = json.load(f)["dataset"]
    return multilayer.extract(
        dataset, str(run / "dataset" / "tfds"), ["train", "validation", "test"],
        backbone="vgg16", weights="none", out=str(out / "store"), work=str(out / "work"),
        image_size=32, resize_modes=SETTINGS["resize_modes"], flip=True, batch_size=32,
        shard_size=SETTINGS["shard_size"], seed=0, include_top="auto", precision="float32")


def test_beam_extraction_equals_local_and_fit_resumes_from_it(tmp_path, monkeypatch):
    from illustration_tl.datasets import input_pipeline
    from illustration_tl.features import beam_extract
    from illustration_tl.features.store import FeatureStore
    from illustration_tl.pipelines import fit_beam

    images, run = tmp_path / "images", tmp_path / "run"
    for c in CLASSES:
        shutil.copytree(os.path.join(SMALL, c), images / c)
    _two_files_per_split(monkeypatch)
    logs: list[str] = []
    summary = fit_beam.run(fit_beam.ExtractConfig(
        images=str(images), output=str(run), beam_options=("--runner=DirectRunner",),
        **SETTINGS), log=logs.append)
    assert summary["embedded"] == 72 * 2, logs   # 72 images x 2 resize modes

    # The split really is read interleaved, not file after file.
    builder = input_pipeline.open_builder(summary["dataset"], str(run / "dataset" / "tfds"))
    reads = beam_extract.file_reads(builder, "train")
    assert len(reads) == FILES_PER_SPLIT
    flat = [p for r in reads for p in r.positions]
    assert sorted(flat) == list(range(len(flat))) and flat != sorted(flat)

    work = [e for e in os.listdir(run) if e.startswith(".features.resume-")]
    assert work == [f".features.resume-{summary['features_key']}"]
    assert sorted(os.listdir(run / work[0] / "train" / "pad"))[0] == "shard-00000.npz"

    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "fit",
                        f"--images={images}", f"--output={run}", *FLAGS],
                       env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[dataset] up to date, skipped" in r.stderr
    for split, n in (json.loads((run / "dataset" / "dataset.json").read_text())
                     ["examples"].items()):
        for mode in SETTINGS["resize_modes"]:
            assert f"features {split} ({mode}): {n} images already in finished shards" \
                in r.stderr, r.stderr[-3000:]
    assert "embedded in" not in r.stderr            # not one image embedded again
    assert json.loads((run / "fit.json").read_text())["status"] == "done"

    beamed, local = FeatureStore.load(str(run / "features")), _local_store(run, tmp_path)
    recipe = beamed.meta.pop("recipe")              # fit records how it built the extractor
    assert recipe["weights"] == "none" and recipe["precision"] == "float32"
    assert beamed.header() == local.header() and beamed.class_names == local.class_names
    store_json = [json.loads(p.read_text())["files"] for p in
                  (run / "features" / "store.json", tmp_path / "store" / "store.json")]
    assert store_json[0] == store_json[1]           # the same array files
    assert len(beamed.blocks) == 7 and beamed.views == ["orig", "flip"]
    for split in ("train", "validation", "test"):
        assert beamed.file_names[split] == local.file_names[split]
        np.testing.assert_array_equal(beamed.labels[split], local.labels[split])
        assert set(beamed.arrays[split]) == set(local.arrays[split])
        for k, v in local.arrays[split].items():
            assert np.asarray(v).shape == np.asarray(beamed.arrays[split][k]).shape
            np.testing.assert_allclose(beamed.arrays[split][k], v, rtol=TOLERANCE,
                                       atol=TOLERANCE, err_msg=f"{split} {k}")


def test_quiet_options_drop_beams_memory_probe_warning_only(caplog):
    """RunInference warns on the root logger, once a batch, where an optional Beam module
    is missing; a quiet ``extract`` drops that line and no other."""
    import logging

    from illustration_tl.pipelines import fit_beam

    fit_beam.pipeline_options(None, quiet=True)
    try:
        with caplog.at_level(logging.WARNING):
            logging.warning("Resource module is not available for current platform, "
                            "memory usage cannot be fetched.")
            logging.warning("another warning")
        assert [r.getMessage() for r in caplog.records] == ["another warning"]
    finally:
        logging.getLogger().removeFilter(fit_beam._NO_MEMORY_PROBE_WARNING)
