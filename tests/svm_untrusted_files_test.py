"""Issue 12 (SVM part): no pickle on any load path; broken files give one line.

A crafted ``svm.joblib`` whose unpickling would create a marker file sits in
SVM and export folders; loading the SVM, exporting and predicting must never
run it. Truncated ``head.npz`` files (the svm stage's head, as ``fit`` writes it)
and truncated exports are UserErrors naming the file or folder. Export never deletes
a folder it did not write.
"""

import glob
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from illustration_tl.core import outputs
from illustration_tl.errors import UserError
from illustration_tl.heads import svm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16


class _Payload:
    """Unpickling this opens (creates) ``path``: proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def plant_payload(directory, marker, name=svm.LEGACY_PICKLE):
    with open(os.path.join(directory, name), "wb") as f:
        pickle.dump(_Payload(marker), f)


@pytest.fixture(scope="module")
def svm_dir(tmp_path_factory):
    """A fitted 2-class SVM on 4-wide embeddings, saved as head.npz + head.json +
    svm.json."""
    rng = np.random.default_rng(0)
    y = np.arange(20) % 2
    x = (rng.normal(size=(20, 4)) + y[:, None] * 3).astype(np.float32)
    fitted = svm.fit(x, y, svm.SvmParams(kernel="rbf", gamma=0.1, multiclass="ovr",
                                         scaling="standard"))
    d = tmp_path_factory.mktemp("svm")
    svm.save(str(d), fitted, ["cat", "dog"])
    return d, x, fitted


def _tiny_embedder():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3),
                             keras.layers.GlobalAveragePooling2D()])


def _export(path, head, **kw):
    from illustration_tl.serving import export

    return export.export_classifier(str(path), model=_tiny_embedder(), backbone="vgg16",
                                    image_size=SIZE, class_names=["cat", "dog"],
                                    head=head, **kw)


def test_the_payload_works_when_unpickled(tmp_path):
    """The test's own check: unpickling the planted file does create the marker."""
    import joblib

    plant_payload(tmp_path, tmp_path / "marker")
    joblib.load(tmp_path / svm.LEGACY_PICKLE)
    assert (tmp_path / "marker").exists()


def test_loading_an_svm_folder_never_unpickles(svm_dir, tmp_path):
    d, x, fitted = svm_dir
    marker = tmp_path / "marker"
    plant_payload(d, marker)
    head, info = svm.load(str(d))
    np.testing.assert_array_equal(svm.head_scores(head, x), fitted.scores(x))
    assert info["class_names"] == ["cat", "dog"] and not marker.exists()

    # A folder with only the pickle (an SVM of an earlier version) is refused.
    old = tmp_path / "old"
    old.mkdir()
    (old / svm.INFO_FILE).write_text((d / svm.INFO_FILE).read_text())
    plant_payload(old, marker)
    with pytest.raises(UserError, match="svm.joblib is a pickle .* not loaded") as e:
        svm.load(str(old))
    assert "\n" not in str(e.value)
    from illustration_tl.serving import export

    with pytest.raises(UserError, match="head.npz"):
        export.export_from_artifacts(str(tmp_path / "export"), backbone="vgg16",
                                     weights="none", image_size=32, svm_dir=str(old))
    assert not marker.exists() and not (tmp_path / "export").exists()


def _head_arrays(d):
    with np.load(d / "head.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _copy_descriptions(d, bad):
    for name in (svm.INFO_FILE, "head.json"):
        (bad / name).write_text((d / name).read_text())


def test_pickled_objects_inside_head_npz_are_refused(svm_dir, tmp_path):
    d, _, fitted = svm_dir
    marker = tmp_path / "marker"
    bad = tmp_path / "bad"
    bad.mkdir()
    _copy_descriptions(d, bad)
    arrays = _head_arrays(d)
    arrays["svm_kernel"] = np.array([_Payload(marker)], dtype=object)  # stored as a pickle
    np.savez(bad / "head.npz", **arrays)
    with pytest.raises(UserError, match="head.npz: not a readable SVM array file"):
        svm.load(str(bad))
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing_array",
                                    "bad_shape", "nan"])
def test_a_broken_head_npz_is_one_line_naming_the_file(svm_dir, tmp_path, damage):
    d, _, fitted = svm_dir
    bad = tmp_path / "bad"
    bad.mkdir()
    _copy_descriptions(d, bad)
    data = (d / "head.npz").read_bytes()
    arrays = _head_arrays(d)
    target = bad / "head.npz"
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        target.write_bytes(b"\x00PK\x03\x04" + bytes(range(256)) * 4)
    elif damage == "empty":
        target.write_bytes(b"")
    else:
        if damage == "missing_array":
            del arrays["svm_intercepts"]
        elif damage == "bad_shape":
            arrays["svm_weights"] = arrays["svm_weights"][:-1]
        else:
            arrays["svm_support_vectors"] = arrays["svm_support_vectors"] * np.nan
        np.savez(target, **arrays)
    with pytest.raises(UserError) as e:
        svm.load(str(bad))
    msg = str(e.value)
    assert "\n" not in msg and str(target) in msg and "retrain" in msg


def test_export_and_predict_never_unpickle(svm_dir, tmp_path):
    from illustration_tl.serving import predict

    d, _, _ = svm_dir
    marker = tmp_path / "marker"
    plant_payload(d, marker)
    head, _ = svm.load(str(d))
    path = tmp_path / "export"
    meta = _export(path, head)
    assert meta["head"] == "svm" and meta["top_k"] == 2 and meta["svm"]["num_classes"] == 2
    plant_payload(path, marker)                    # a pickle inside the export, too
    plant_payload(path, marker, "saved_model.pkl")
    p = predict.Predictor(str(path))
    out = p.classify_pixels(np.full((3, SIZE, SIZE, 3), 128.0, np.float32))
    assert out["all_scores"].shape == (3, 2) and out["class_indices"].shape == (3, 2)
    with pytest.raises(UserError, match="not a SavedModel"):
        predict.Predictor(str(d))                  # an SVM folder is not a model
    assert not marker.exists()


def test_export_refuses_folders_it_did_not_write(svm_dir, tmp_path, monkeypatch):
    d, _, _ = svm_dir
    head, _ = svm.load(str(d))
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "results.csv").write_text("a,b\n")
    (mine / "sub" / "notes.txt").write_text("notes")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="--overwrite only replaces an earlier `export`"):
            _export(mine, head, overwrite=overwrite)
    assert (mine / "results.csv").read_text() == "a,b\n"
    assert (mine / "sub" / "notes.txt").read_text() == "notes"
    assert sorted(os.listdir(mine)) == ["results.csv", "sub"]

    own = tmp_path / "own"
    _export(own, head)
    assert outputs.is_own_output(str(own), "export")
    with pytest.raises(UserError, match="pass --overwrite"):
        _export(own, head)
    before = (own / "saved_model.pb").stat().st_ino
    _export(own, head, overwrite=True)
    assert (own / "saved_model.pb").stat().st_ino != before
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".")) == []

    monkeypatch.chdir(own)
    with pytest.raises(UserError, match="current folder"):
        _export(".", head, overwrite=True)


def test_svm_output_refuses_a_user_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("a,b\n")
    with pytest.raises(UserError, match=r"--output=.*mine is not empty"):
        svm.train_and_evaluate(str(tmp_path / "no-embeddings"), str(mine),
                               svm.SvmParams(), overwrite=True)
    assert os.listdir(mine) == ["results.csv"]


def _truncated_export(svm_dir, tmp_path):
    d, _, _ = svm_dir
    head, _ = svm.load(str(d))
    path = tmp_path / "export"
    _export(path, head)
    (data,) = glob.glob(str(path / "variables" / "variables.data-*"))
    with open(data, "rb+") as f:
        f.truncate(os.path.getsize(data) // 2)
    return path


def test_a_truncated_export_is_one_line_naming_it(svm_dir, tmp_path):
    from illustration_tl.serving import predict

    path = _truncated_export(svm_dir, tmp_path)
    with pytest.raises(UserError) as e:
        predict.Predictor(str(path))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "export" in msg


@pytest.mark.slow
def test_predict_command_on_a_truncated_export_and_an_svm_folder(svm_dir, tmp_path):
    d, _, _ = svm_dir
    marker = tmp_path / "marker"
    plant_payload(d, marker)
    path = _truncated_export(svm_dir, tmp_path)
    image = os.path.join(ROOT, "illustration_tl", "demo", "curated", "lemon")
    for model in (path, d):
        r = subprocess.run([sys.executable, "-m", "illustration_tl.commands.predict",
                            f"--model={model}", f"--images={image}"], capture_output=True,
                           text=True, cwd=ROOT, timeout=600,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert r.returncode == 2, r.stderr[-2000:]
        assert str(model) in r.stderr and "Traceback" not in r.stderr
        assert len([line for line in r.stderr.splitlines() if "error:" in line]) == 1
    assert not marker.exists()
