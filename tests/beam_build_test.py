"""The builder's Beam mode (TFDS ``beam_runner``): DirectRunner on the dummy noisy data
yields exactly the examples of the plain build (needs the ``tfds-cli`` extra)."""

import os

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISY = os.path.join(ROOT, "illustration_tl", "datasets", "illustrations", "dummy_data", "noisy")


def _examples(builder):
    import tensorflow_datasets as tfds

    out = {}
    for split in builder.info.splits:
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
            key = (split, ex["file_name"].decode(), int(ex["label"]))
            assert key not in out
            out[key] = (ex["image"], int(ex["imagenet_index"]), ex["matched_words"].decode())
    return out


@pytest.mark.slow
def test_beam_build_equals_plain_build(tmp_path):
    import tensorflow_datasets as tfds

    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b

    plain = b.Builder(config="noisy", data_dir=str(tmp_path / "plain"))
    plain.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=NOISY))
    beamed = b.Builder(config="noisy", data_dir=str(tmp_path / "beam"))
    beamed.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=NOISY, beam_runner=beam.runners.DirectRunner()))
    assert beamed._use_beam and not plain._use_beam
    assert beamed.info.features["label"].names == plain.info.features["label"].names
    assert {s: beamed.info.splits[s].num_examples for s in beamed.info.splits} == \
        {s: plain.info.splits[s].num_examples for s in plain.info.splits}
    a, c = _examples(plain), _examples(beamed)
    assert a.keys() == c.keys() and len(a) == 23
    for key in a:
        np.testing.assert_array_equal(a[key][0], c[key][0])
        assert a[key][1:] == c[key][1:]


@pytest.mark.slow
def test_build_command_beam_options(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "build", "--config=noisy",
                        f"--manual_dir={NOISY}", f"--data_dir={tmp_path}",
                        "--beam_options=--runner=DirectRunner"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 classes; examples: test 4, train 16, validation 3" in r.stdout
