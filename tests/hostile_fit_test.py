"""Hostile use of ``fit`` (issue 20): every fit-side case of the issue's "Why" list.

Each case asserts its exact outcome: one line and exit 2 (API: the same
:class:`UserError`), a listed skip, or a redone stage; command-line cases hash
every file outside the command's output before and after (nothing else may
change). Every test runs under the SIGALRM guard of :mod:`hostile_test`, and
every subprocess under a timeout. Tiny: random-weight VGG16 at 32 px, three
classes of real clip art.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hostile_test import _guard, _png_file, snapshot  # noqa: F401 - _guard is autouse

from illustration_tl.core import outputs
from illustration_tl.errors import UserError
from illustration_tl.pipelines import fit as fitting
from illustration_tl.pipelines import stages
from illustration_tl.serving import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
CLASSES = ("bird", "flower", "fruit")
TINY = ["--weights=none", "--image_size=32", "--num_workers=1", "--resize_modes=squash"]
CLI_TIMEOUT_S = 300
OUTCOMES: dict[str, str] = {}  # case -> outcome (kinds and outcomes, as listed in the note)


def _images(root) -> str:
    for c in CLASSES:
        shutil.copytree(os.path.join(SMALL, c), os.path.join(root, c))
    return str(root)


def _fit(*args: str, env: dict | None = None, timeout: int = CLI_TIMEOUT_S):
    e = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "illustration_tl.cli", "fit", *args],
                          capture_output=True, text=True, env=e, timeout=timeout, cwd=ROOT)


def _one_line(proc) -> str:
    """The single error line of a refused command (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if "error" in line.lower()]
    assert len(lines) == 1, proc.stderr
    return lines[0].split(": error: ", 1)[1]


def _cfg(images: str, output: str, **kw) -> fitting.FitConfig:
    base = dict(images=images, output=output, weights="none", image_size=32, num_workers=1,
                resize_modes=("squash",))
    return fitting.FitConfig(**{**base, **kw})


# --------------------------------------------------------------------------- flags

OUT_OF_RANGE = {
    "cv_folds=0": ("--cv_folds=0", {"folds": 0}, "--cv_folds=0: give at least 2"),
    "cv_folds=1": ("--cv_folds=1", {"folds": 1}, "--cv_folds=1: give at least 2"),
    "n_jobs=0": ("--n_jobs=0", {"n_jobs": 0},
                 "--n_jobs=0: give 1 or more threads, or -1 for all cores"),
    "image_size=-5": ("--image_size=-5", {"image_size": -5}, "--image_size=-5: give at least 32"),
    "seed=-1": ("--seed=-1", {"seed": -1}, "--seed=-1: give at least 0"),
    "resize_modes=": ("--resize_modes=", {"resize_modes": ()},
                      "--resize_modes=: give at least one of squash, pad"),
    "resize_modes=zoom": ("--resize_modes=zoom", {"resize_modes": ("zoom",)},
                          "--resize_modes=zoom: 'zoom' is not one of squash, pad"),
    "batch_size=0": ("--batch_size=0", {"batch_size": 0}, "--batch_size=0: give at least 1"),
    "num_workers=-2": ("--num_workers=-2", {"num_workers": -2},
                       "--num_workers=-2: give at least 0"),
    "max_pixels=0": ("--max_pixels=0", {"max_pixels": 0}, "--max_pixels=0: give at least 1"),
    "weights=/missing": ("--weights=/missing.weights.h5", {"weights": "/missing.weights.h5"},
                         "--weights=/missing.weights.h5: no such file; give a .h5/.weights.h5 "
                         "file, imagenet or none"),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE))
def test_out_of_range_settings_are_refused_before_any_work(case, tmp_path):
    """API: the same UserError; nothing written (the output folder is not even made)."""
    images = _images(tmp_path / "images")
    _, kw, message = OUT_OF_RANGE[case]
    with pytest.raises(UserError) as e:
        fitting.run(_cfg(images, str(tmp_path / "run"), **{**kw}))
    assert str(e.value) == message
    assert not (tmp_path / "run").exists()
    OUTCOMES[f"flag {case}"] = "one line"


@pytest.mark.slow
def test_out_of_range_flags_exit_2_in_one_line(tmp_path):
    images = _images(tmp_path / "images")
    before = snapshot(str(tmp_path), exclude=str(tmp_path / "run"))
    for case, (flag, _, message) in sorted(OUT_OF_RANGE.items()):
        proc = _fit(f"--images={images}", f"--output={tmp_path / 'run'}", *TINY, flag,
                    timeout=120)
        assert _one_line(proc) == message, case
    assert not (tmp_path / "run").exists()
    assert snapshot(str(tmp_path), exclude=str(tmp_path / "run")) == before


# --------------------------------------------------------------------------- outputs


def _refused(tmp_path, images: str, output: str) -> str:
    before = snapshot(str(tmp_path), exclude=str(tmp_path / "nothing"))
    with pytest.raises(UserError) as e:
        fitting.run(_cfg(images, output))
    assert snapshot(str(tmp_path), exclude=str(tmp_path / "nothing")) == before
    return str(e.value)


def test_a_folder_holding_only_fit_json_is_foreign(tmp_path):
    images = _images(tmp_path / "images")
    out = tmp_path / "old"
    (out / "search").mkdir(parents=True)
    (out / "fit.json").write_text('{"status": "done"}')
    (out / "report.md").write_text("mine")
    (out / "search" / "leaderboard.md").write_text("mine too")
    assert _refused(tmp_path, images, str(out)) == (
        f"--output={out} is not empty and is not an earlier `fit` output (it has no "
        "illustration_tl_output.json written by `fit`); choose a new or empty folder")
    OUTCOMES["output: stray fit.json"] = "one line"


def test_output_inside_images_and_images_inside_output_are_refused(tmp_path):
    images = _images(tmp_path / "images")
    inner = os.path.join(images, "run")
    assert _refused(tmp_path, images, inner) == (
        f"--output={inner} is inside --images={images}: the run would read its own outputs "
        "as input; choose an output folder elsewhere")
    assert _refused(tmp_path, images, str(tmp_path)) == (
        f"--images={images} is inside --output={tmp_path}: move the input out of the output "
        "folder or choose another output folder")
    OUTCOMES["output inside images"] = OUTCOMES["images inside output"] = "one line"


def test_output_under_a_file_or_in_proc_is_one_line(tmp_path):
    images = _images(tmp_path / "images")
    (tmp_path / "file").write_text("x")
    sub = str(tmp_path / "file" / "sub")
    assert _refused(tmp_path, images, sub) == (
        f"--output={sub}: {tmp_path / 'file'} is a file, not a folder; choose a folder path")
    message = _refused(tmp_path, images, "/proc/x")
    assert message.startswith("--output=/proc/x: cannot create the folder (")
    OUTCOMES["output=file/sub"] = OUTCOMES["output=/proc/x"] = "one line"


def test_a_folder_added_to_an_output_is_foreign_and_a_lock_folder_is_one_line(tmp_path):
    out = str(tmp_path / "run")
    outputs.claim(out, marker="fit")
    (tmp_path / "run" / "mine.txt").write_text("x")
    with pytest.raises(UserError) as e:
        outputs.claim(out, marker="fit")
    assert str(e.value) == (f"--output={out} holds files `fit` did not write (e.g. mine.txt); "
                            "move them out or choose a new folder")
    os.remove(tmp_path / "run" / "mine.txt")
    os.mkdir(os.path.join(out, stages.LOCK_FILE))
    outputs.record(out, "fit")  # even listed as its own: a folder is no lock file
    with pytest.raises(UserError) as e:
        stages.open_output(out, "fit", {}, "--output")
    assert str(e.value) == (f"cannot lock {os.path.join(out, stages.LOCK_FILE)}: it is not a "
                            "regular file (a folder or a link); remove it or use another "
                            "output folder")
    OUTCOMES["output: unlisted file"] = OUTCOMES["lock path is a folder"] = "one line"


# --------------------------------------------------------------------------- stages


def _stages(root: str) -> stages.Stages:
    return stages.Stages(root, log=lambda m: None, marker="fit")


def _write(name: str, text: str):
    def fn(out: str) -> None:
        with open(os.path.join(out, name), "w") as f:
            f.write(text)
    return fn


def test_missing_or_edited_outputs_are_redone_and_so_is_downstream(tmp_path):
    root = str(tmp_path / "run")
    outputs.claim(root, marker="fit")
    ran: list[str] = []

    def pipeline(a_text: str = "a") -> stages.Stages:
        st = _stages(root)
        st.run("a", {}, lambda out: (ran.append("a"), _write("a.txt", a_text)(out)))
        st.run("b", {}, lambda out: (ran.append("b"), _write("b.npz", "b")(out)), ["a"])
        st.run("c", {}, lambda out: (ran.append("c"), _write("c.txt", "c")(out)), ["b"])
        return st

    pipeline()
    assert ran == ["a", "b", "c"]
    ran.clear()
    pipeline()
    assert ran == []                                    # up to date
    os.remove(os.path.join(root, "c", "c.txt"))         # a deleted output (saved_model.pb)
    pipeline()
    assert ran == ["c"]
    ran.clear()
    with open(os.path.join(root, "b", "b.npz"), "r+") as f:
        f.truncate(0)                                   # a truncated features.npz
    pipeline()
    assert ran == ["b"]                                 # same bytes again: c still matches
    ran.clear()
    shutil.rmtree(os.path.join(root, "a"))              # an upstream rerun with new content
    pipeline("a2")
    assert ran == ["a", "b", "c"]
    assert outputs.is_own_output(root, "fit")
    OUTCOMES["stage output deleted"] = OUTCOMES["stage output truncated"] = "redone"
    OUTCOMES["upstream rerun, downstream consistent"] = "redone"


def test_fifos_in_a_stage_folder_are_redone_without_hanging(tmp_path):
    root = str(tmp_path / "run")
    outputs.claim(root, marker="fit")
    _stages(root).run("search", {}, _write("leaderboard.json", "{}"))
    os.remove(os.path.join(root, "search", "leaderboard.json"))
    os.mkfifo(os.path.join(root, "search", "leaderboard.json"))
    os.remove(os.path.join(root, "search", stages.STAGE_FILE))
    os.mkfifo(os.path.join(root, "search", stages.STAGE_FILE))
    ran = []
    _stages(root).run("search", {}, lambda out: (ran.append(1), _write("leaderboard.json",
                                                                       "{}")(out)))
    assert ran == [1] and os.path.isfile(os.path.join(root, "search", "leaderboard.json"))
    OUTCOMES["FIFO in place of a stage's files"] = "redone"


KILLED_STAGE = textwrap.dedent("""
    import os, signal, sys
    from illustration_tl.pipelines import stages
    st = stages.Stages(sys.argv[1], log=lambda m: None, marker="fit")
    def half_then_die(out):
        with open(os.path.join(out, "saved_model.pb"), "w") as f:
            f.write("half")
        os.kill(os.getpid(), signal.SIGKILL)
    st.run("model", {"v": 2}, half_then_die)
""")


def test_sigkill_during_a_stage_keeps_the_old_stage_and_the_next_run_cleans_up(tmp_path):
    root = str(tmp_path / "run")
    outputs.claim(root, marker="fit")
    _stages(root).run("model", {"v": 1}, _write("saved_model.pb", "old model"))
    proc = subprocess.run([sys.executable, "-c", KILLED_STAGE, root], timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == -signal.SIGKILL
    with open(os.path.join(root, "model", "saved_model.pb")) as f:
        assert f.read() == "old model"                  # the old stage, complete
    leftovers = [n for n in os.listdir(root) if ".stage-tmp-" in n]
    assert len(leftovers) == 1 and outputs.pending(root) == leftovers
    outputs.claim(root, marker="fit")                    # listed as pending: still ours
    st = _stages(root)                                   # the next run removes it
    assert not [n for n in os.listdir(root) if ".stage-tmp-" in n]
    st.run("model", {"v": 1}, lambda out: pytest.fail("the old model is complete"))
    assert outputs.is_own_output(root, "fit")
    OUTCOMES["SIGKILL during the model write"] = "old model kept, leftover removed"


def test_object_array_in_a_stage_npz_is_redone(tmp_path):
    root = str(tmp_path / "run")
    outputs.claim(root, marker="fit")

    def head(out: str) -> None:
        np.savez(os.path.join(out, "head.npz"), weights=np.ones(3))

    _stages(root).run("final", {}, head)
    np.savez(os.path.join(root, "final", "head.npz"), weights=np.array([{"x": 1}], object))
    ran = []
    _stages(root).run("final", {}, lambda out: (ran.append(1), head(out)))
    assert ran == [1]
    with np.load(os.path.join(root, "final", "head.npz"), allow_pickle=False) as z:
        assert z["weights"].dtype == np.float64
    OUTCOMES["object array in head.npz"] = "redone"


# --------------------------------------------------------------------------- inputs


def test_class_only_in_val_is_refused_in_one_line(tmp_path):
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b

    manual = tmp_path / "authors"
    for split, cls, n in [("train", "cat", 8), ("train", "dog", 8), ("val", "cat", 2),
                          ("val", "dog", 2), ("val", "owl", 3)]:
        (manual / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _png_file(manual / split / cls / f"{i}.png", seed=hash((split, cls, i)) % 1000)
    with pytest.raises(ValueError) as e:
        b.build("curated", str(manual), str(tmp_path / "tfds"), num_workers=1)
    assert str(e.value).splitlines()[0] == (
        f"class 'owl' has test images (val/) but no training images (train/) under "
        f"{str(manual)!r}; add its images under train/owl/ or remove val/owl/")
    OUTCOMES["class only in val/"] = "one line"


def test_offline_imagenet_is_one_line_and_asks_only_for_the_no_top_file(tmp_path,
                                                                        monkeypatch):
    from keras.src.utils import file_utils

    images = _images(tmp_path / "images")
    asked = []

    def no_network(fname, origin=None, **kw):
        asked.append(fname)
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for search, wanted in (("fast", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
                           ("paper", "vgg16_weights_tf_dim_ordering_tf_kernels.h5")):
        with pytest.raises(UserError) as e:
            fitting.run(_cfg(images, str(tmp_path / "run"), weights="imagenet",
                             image_size=None, search=search))
        assert asked[-1] == wanted
        assert str(e.value) == (
            "--weights=imagenet: could not download the vgg16 ImageNet weights (no "
            f"network?); put the file at {tmp_path / 'keras' / 'models' / wanted} or pass a "
            "local file with --weights=PATH")
    assert not (tmp_path / "run").exists()
    OUTCOMES["--weights=imagenet offline"] = "one line"


@pytest.mark.slow
def test_offline_imagenet_cli_without_network_is_one_line(tmp_path):
    """A real failed download: every connection refused (a proxy on a closed port)."""
    images = _images(tmp_path / "images")
    before = snapshot(str(tmp_path), exclude=str(tmp_path / "keras"))
    proc = _fit(f"--images={images}", f"--output={tmp_path / 'run'}", timeout=180,
                env={"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
                     "https_proxy": "http://127.0.0.1:9"})
    line = _one_line(proc)
    assert line.startswith("--weights=imagenet: could not download the vgg16 ImageNet "
                           "weights") and "--weights=PATH" in line
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in line
    assert snapshot(str(tmp_path), exclude=str(tmp_path / "keras")) == before


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny run on a folder with a dot-folder class, a hidden file and an image over
    --max_pixels; the cases below damage its outputs and rerun."""
    base = tmp_path_factory.mktemp("fit")
    images = _images(base / "images")
    os.makedirs(os.path.join(images, "..x"))
    for i in range(6):
        shutil.copy(os.path.join(images, "bird", sorted(os.listdir(
            os.path.join(images, "bird")))[i]), os.path.join(images, "..x", f"{i}.png"))
    shutil.copy(os.path.join(images, "fruit", sorted(os.listdir(
        os.path.join(images, "fruit")))[0]), os.path.join(images, "fruit", ".hidden.png"))
    from PIL import Image

    Image.new("RGB", (200, 200), "red").save(os.path.join(images, "flower", "big.png"))
    out = base / "run"
    before = snapshot(str(base), exclude=str(out))
    proc = _fit(f"--images={images}", f"--output={out}", *TINY, "--max_pixels=20000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert snapshot(str(base), exclude=str(out)) == before
    return base, images, out, proc


def _rerun(fitted_run, *extra):
    base, images, out, _ = fitted_run
    before = snapshot(str(base), exclude=str(out))
    proc = _fit(f"--images={images}", f"--output={out}", *TINY, "--max_pixels=20000", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert snapshot(str(base), exclude=str(out)) == before
    return proc.stderr


@pytest.mark.slow
def test_hidden_entries_and_big_images_are_listed_and_named(fitted):
    _, _, out, proc = fitted
    tsv = next(os.path.join(d, n) for d, _, names in os.walk(out / "dataset")
               for n in names if n == "skipped.tsv")
    with open(tsv, encoding="utf-8") as f:
        rows = dict(line.rstrip("\n").split("\t") for line in f)
    assert rows["..x"].startswith("hidden folder (its name starts with '.')")
    assert rows["fruit/.hidden.png"].startswith("hidden file (its name starts with '.')")
    assert rows["flower/big.png"].startswith("decompression-bomb guard: 200x200 = 40,000 "
                                             "pixels is over max_pixels=20,000")
    assert f"skipped {len(rows) - 1} file(s), listed with reasons in" in proc.stderr
    assert "  ..x: hidden folder" in proc.stderr and "  flower/big.png: " in proc.stderr
    assert "[eta] 1/7 stages done" in proc.stderr and "s left" in proc.stderr
    assert any(line.startswith("search: ") and " left" in line
               for line in proc.stderr.splitlines())
    doc = outputs.read_manifest(str(out))
    assert doc["written_by"] == "fit" and outputs.is_own_output(str(out), "fit")
    for case in ("dot-folder class", "hidden file", "image over --max_pixels"):
        OUTCOMES[case] = "listed skip"


@pytest.mark.slow
def test_deleted_saved_model_is_redone_not_reported(fitted):
    _, _, out, _ = fitted
    os.remove(out / "model" / "saved_model.pb")
    err = _rerun(fitted)
    assert "[model] outputs changed, missing or incomplete since it ran" in err
    assert "[search] up to date, skipped" in err
    assert (out / "model" / "saved_model.pb").is_file()
    assert json.loads((out / "fit.json").read_text())["status"] == "done"
    OUTCOMES["deleted model/saved_model.pb"] = "redone"


@pytest.mark.slow
def test_deleted_leaderboard_and_truncated_features_redo_everything_after(fitted):
    _, _, out, _ = fitted
    chosen = json.loads((out / "fit.json").read_text())["chosen"]
    os.remove(out / "search" / "leaderboard.json")
    err = _rerun(fitted)
    for stage in ("search", "final"):  # evaluate and model: redone unless final's bytes
        assert f"[{stage}] running" in err, stage  # came out identical
    assert "[features] up to date" in err
    board = json.loads((out / "search" / "leaderboard.json").read_text())
    served = json.loads((out / "model" / export.METADATA_FILE).read_text())
    assert json.loads((out / "fit.json").read_text())["chosen"]["label"] == chosen["label"] \
        == board["chosen"]["label"] == served["label"]
    array = sorted((out / "features" / "train").glob("*.npy"))[-1]
    with open(array, "r+b") as f:
        f.truncate(100)
    err = _rerun(fitted)
    assert "[features] outputs changed" in err and "[features] running" in err
    # The same bytes again (the extraction is deterministic): what reads them is still
    # consistent with them, so it is kept (keys hold the content, not a run counter).
    assert "[search] up to date" in err and "[model] up to date" in err
    assert np.load(array, allow_pickle=False).ndim >= 1
    head = out / "final" / "head.npz"
    np.savez(head, bad=np.array([{"x": 1}], object))
    err = _rerun(fitted)
    assert "[final] outputs changed" in err
    assert _rerun(fitted).count("up to date, skipped") == 7
    OUTCOMES["deleted leaderboard"] = OUTCOMES["truncated feature array"] = "redone"
    OUTCOMES["object array in head.npz (run)"] = "redone"


@pytest.mark.slow
def test_dry_run_says_what_and_writes_nothing(tmp_path):
    images = _images(tmp_path / "images")
    before = snapshot(str(tmp_path), exclude=str(tmp_path / "nothing"))
    proc = _fit(f"--images={images}", f"--output={tmp_path / 'run'}", *TINY, "--dry_run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "classes: 3 (flat layout): bird 24, flower 24, fruit 24" in out
    assert "forward passes: 144 (vgg16 at 32 px, 1 resize mode(s) x 2 view(s))" in out
    assert "configurations to search: " in out and "estimated time on this machine" in out
    assert snapshot(str(tmp_path), exclude=str(tmp_path / "nothing")) == before
    OUTCOMES["--dry_run"] = "nothing written"
