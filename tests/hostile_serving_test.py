"""Issue 20, serving side: a hostile user's models, folders and manifests against
``load()``, ``predict`` and ``evaluate``.

Every case runs under a timeout and hashes everything outside the command's output
before and after (:func:`_tree`): 0 files changed outside the output, 0 tracebacks,
0 hangs. Expected outcomes: ``refused`` (one line; exit 2 from the CLI, UserError
from the API), ``listed`` (left out and named, never opened) or ``correct`` (the
right number). :data:`CASES` counts them by kind and outcome for the note.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from guards import time_limit
from PIL import Image

from illustration_tl.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           TF_CPP_MIN_LOG_LEVEL="3", PYTHONIOENCODING="utf-8:strict")
SIZE = 16
SECRET = "s3cret-do-not-print"
# Classes by dominant colour (see _colour_model): names a hostile or careless user picks.
NAMES = ["Cat", "cat", "=HYPERLINK(\"http://x\")", "ice cream"]
COLOURS = {"Cat": (0, 0, 255), "cat": (0, 255, 0), "=HYPERLINK(\"http://x\")": (255, 0, 0)}

# Crafted SavedModels: each refused by the op check. Kinds whose function writes the
# canary when run name it in WRITES.
CRAFTED = ["write_file", "read_file", "print_to_file", "matching_files", "text_file_table",
           "dataset_reads_file", "nested_function_writes", "while_body_writes",
           "dataset_map_writes", "saver_op_in_signature", "metadata_writes"]
CASES: dict[tuple[str, str], int] = {}
TIMEOUT_S = 300  # per test (SIGALRM): a hang on a FIFO fails the test instead of the suite


@pytest.fixture(autouse=True)
def _guard():
    """Fails a test that runs longer than TIMEOUT_S (a hang on a FIFO, an endless read)."""
    with time_limit(TIMEOUT_S):
        yield


def _count(kind: str, outcome: str) -> None:
    CASES[(kind, outcome)] = CASES.get((kind, outcome), 0) + 1


def _tree(root, skip=()) -> dict[str, str]:
    """Hash of every entry under ``root`` (but ``skip``): content of regular files,
    targets of links, type of anything else (never opened)."""
    out = {}
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.path.join(dirpath, d) not in skip)
        for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[p] = "link:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[p] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[p] = f"mode:{stat.S_IFMT(st.st_mode)}"
    return out


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "illustration_tl.cli", *args], cwd=ROOT,
                          env=ENV, capture_output=True, timeout=timeout)


def _one_line_refusal(r: subprocess.CompletedProcess, *needles: str) -> str:
    err = r.stderr.decode("utf-8")
    assert r.returncode == 2, err[-2000:]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]
    for n in needles:
        assert n in err, err
    return err


def _colour_model():
    import keras

    kernel = np.zeros((3, len(NAMES)), np.float32)
    kernel[:, :3] = np.eye(3)  # VGG preprocessing is BGR: 0 blue, 1 green, 2 red
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(len(NAMES), activation="softmax")])
    model.layers[-1].set_weights([kernel, np.zeros(len(NAMES), np.float32)])
    return model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An export with hostile class names, a secret outside every input, and crafted
    models that would write ``canary`` (or read the secret) if anything ran."""
    from illustration_tl.serving import export

    root = tmp_path_factory.mktemp("hostile")
    (root / "secret.txt").write_text(SECRET)
    export.export_classifier(str(root / "model"), model=_colour_model(), backbone="vgg16",
                             image_size=SIZE, class_names=NAMES)
    for kind in CRAFTED:
        craft(root / "crafted" / kind, kind, root / "canary.txt", root / "secret.txt")
    return root


def craft(path, kind: str, canary, secret) -> None:
    """A SavedModel with this project's signatures and metadata file whose functions
    touch files (``kind``); the canary is written by every kind that can write."""
    import tensorflow as tf

    canary, secret = str(canary), str(secret)
    module = tf.Module()

    @tf.function
    def inner_write():
        tf.io.write_file(canary, "ran")

    table = None
    if kind == "text_file_table":
        table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            secret, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER), -1)
        module.table = table

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def classify_images(images):
        extra = tf.constant(0.0)
        if kind == "write_file":
            tf.io.write_file(canary, "ran")
        elif kind == "read_file":
            extra = tf.cast(tf.strings.length(tf.io.read_file(secret)), tf.float32)
        elif kind == "print_to_file":
            tf.print("ran", output_stream="file://" + canary)
        elif kind == "matching_files":
            extra = tf.cast(tf.size(tf.io.matching_files(os.path.dirname(secret) + "/*")),
                            tf.float32)
        elif kind == "text_file_table":
            extra = tf.cast(table.lookup(tf.constant(SECRET)), tf.float32)
        elif kind == "dataset_reads_file":
            ds = tf.data.TextLineDataset(secret).map(tf.strings.length)
            extra = tf.cast(ds.reduce(0, lambda a, b: a + b), tf.float32)
        elif kind == "nested_function_writes":
            inner_write()
        elif kind == "while_body_writes":
            def body(i):
                tf.io.write_file(canary, "ran")
                return i + 1
            tf.while_loop(lambda i: i < 1, body, [tf.constant(0)])
        elif kind == "dataset_map_writes":
            ds = tf.data.Dataset.range(1).map(
                lambda x: (tf.io.write_file(canary, "ran"), x)[1])
            for _ in ds:
                pass
        elif kind == "saver_op_in_signature":
            tf.raw_ops.SaveV2(prefix=canary, tensor_names=["x"], shape_and_slices=[""],
                              tensors=[tf.constant(1.0)])
        s = tf.reduce_mean(images, axis=[1, 2])
        s = tf.concat([s, tf.zeros_like(s[:, :1])], 1) + extra
        return {"all_scores": s, "scores": s, "class_indices": tf.zeros_like(s, tf.int32),
                "class_names": tf.fill(tf.shape(s), "a")}

    @tf.function(input_signature=[])
    def metadata():
        if kind == "metadata_writes":
            tf.io.write_file(canary, "ran")
        return {"metadata": tf.constant("{}")}

    module.classify_images = classify_images
    module.metadata = metadata
    tf.saved_model.save(module, str(path), signatures={
        "classify_images": classify_images, "serving_default": classify_images,
        "metadata": metadata})
    (path / "illustration_tl.json").write_text(json.dumps(
        {"class_names": NAMES, "image_size": SIZE, "resize_mode": "squash"}))


def test_crafted_models_do_run_file_ops_when_loaded_without_the_check(world, tmp_path):
    """The test's own check: TensorFlow itself runs the write (so refusals mean something)."""
    import tensorflow as tf

    canary = world / "canary.txt"
    loaded = tf.saved_model.load(str(world / "crafted" / "write_file"))
    loaded.signatures["classify_images"](images=tf.zeros([1, SIZE, SIZE, 3]))
    assert canary.read_text() == "ran"
    canary.unlink()


@pytest.mark.parametrize("kind", CRAFTED)
def test_crafted_models_are_refused_by_load_before_anything_runs(world, kind, tmp_path):
    import illustration_tl
    from illustration_tl.serving import predict

    model = world / "crafted" / kind
    run = tmp_path / "run"          # the same model inside a `fit` run folder layout
    run.mkdir()
    os.symlink(model, run / "model")
    before = _tree(world)
    for target, shown in ((model, model), (run, run / "model")):
        with pytest.raises(UserError) as e:
            illustration_tl.load(str(target))
        msg = str(e.value)
        assert "\n" not in msg and "refused before loading" in msg and str(shown) in msg
        with pytest.raises(UserError, match="refused before loading"):
            predict.Predictor(str(target))
    assert not (world / "canary.txt").exists() and _tree(world) == before
    _count("crafted SavedModel (load/Predictor)", "refused")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["write_file", "nested_function_writes", "text_file_table"])
def test_crafted_models_are_refused_by_predict_and_evaluate(world, kind, tmp_path):
    model = world / "crafted" / kind
    images = tmp_path / "images" / "Cat"
    images.mkdir(parents=True)
    Image.new("RGB", (8, 8), COLOURS["Cat"]).save(images / "a.png")
    before = _tree(world)
    _one_line_refusal(_cli("predict", f"--model={model}", f"--images={images}"),
                      "refused before loading", str(model))
    _one_line_refusal(_cli("evaluate", f"--model={model}", f"--images={images.parent}",
                           f"--output={tmp_path / 'out'}"), "refused before loading")
    assert not (world / "canary.txt").exists() and _tree(world) == before
    assert not (tmp_path / "out").exists()
    _count("crafted SavedModel (predict, evaluate CLI)", "refused")


@pytest.mark.parametrize("damage", ["tf1_graph", "assets", "undefined_function",
                                    "truncated_pb", "fifo_pb"])
def test_structures_the_loader_would_run_differently_are_refused(world, tmp_path, damage):
    """Proto-level tampering with a good export: a model TensorFlow would load the TF1
    way (running its init ops), asset files, a call to a function the model does not
    define, a truncated saved_model.pb, a FIFO named saved_model.pb."""
    import shutil

    from tensorflow.core.protobuf import saved_model_pb2

    import illustration_tl

    bad = tmp_path / "bad"
    shutil.copytree(world / "model", bad)
    pb = bad / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(pb.read_bytes())
    mg = proto.meta_graphs[0]
    if damage == "tf1_graph":
        mg.ClearField("object_graph_def")
    elif damage == "assets":
        mg.asset_file_def.add().filename = "../../secret.txt"
    elif damage == "undefined_function":
        node = next(n for f in mg.graph_def.library.function for n in f.node_def
                    if "f" in n.attr and n.attr["f"].HasField("func"))
        node.attr["f"].func.name = "not_in_the_library"
    if damage == "truncated_pb":
        pb.write_bytes(pb.read_bytes()[:100])
    elif damage == "fifo_pb":
        pb.unlink()
        os.mkfifo(pb)
    else:
        pb.write_bytes(proto.SerializeToString())
    with pytest.raises(UserError) as e:
        illustration_tl.load(str(bad))
    assert "\n" not in str(e.value) and str(bad) in str(e.value), str(e.value)
    _count("tampered SavedModel structure", "refused")


def test_an_export_without_its_metadata_file_is_refused(world, tmp_path):
    import shutil

    import illustration_tl

    old = tmp_path / "old"
    shutil.copytree(world / "model", old)
    (old / "illustration_tl.json").unlink()
    with pytest.raises(UserError, match="re-export") as e:
        illustration_tl.load(str(old))
    assert "\n" not in str(e.value)
    (old / "illustration_tl.json").write_text('{"class_names": "x"}')
    with pytest.raises(UserError, match="class_names"):
        illustration_tl.load(str(old))
    _count("export without or with bad metadata JSON", "refused")


def _folder_with_traps(tmp_path, world):
    """Class folders of real images plus a symlink out, a FIFO and a formula file name."""
    root = tmp_path / "images"
    for cls in ("Cat", "cat"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), COLOURS[cls]).save(root / cls / f"{i}.png")
    Image.new("RGB", (8, 8), COLOURS["Cat"]).save(root / "=SUM(1+1).png")  # unlabelled
    os.symlink(world / "secret.txt", root / "Cat" / "x.png")
    os.mkfifo(root / "cat" / "fifo.png")
    return root


@pytest.mark.slow
def test_predict_lists_links_out_and_fifos_and_never_echoes_bytes(world, tmp_path):
    root = _folder_with_traps(tmp_path, world)
    before = _tree(tmp_path), _tree(world)
    r = _cli("predict", f"--model={world / 'model'}", f"--images={root}", "--format=json",
             timeout=120)
    out, err = r.stdout.decode("utf-8"), r.stderr.decode("utf-8")
    assert r.returncode == 3 and "Traceback" not in err, err
    rows = {os.path.basename(json.loads(line)["path"]): json.loads(line)
            for line in out.splitlines()}
    assert "outside the input folder" in rows["x.png"]["error"]
    assert "FIFO" in rows["fifo.png"]["error"]
    assert rows["=SUM(1+1).png"]["classes"][0] == "Cat"
    assert SECRET not in out + err and "s3cret" not in out + err
    assert (_tree(tmp_path), _tree(world)) == before
    _count("predict: symlink out of the folder", "listed")
    _count("predict: FIFO in the folder", "listed")


@pytest.mark.slow
def test_evaluate_matches_exact_names_and_neutralizes_csv_cells(world, tmp_path):
    """Cat and cat are two classes: 4/4 right (folding them gave wrong numbers)."""
    from illustration_tl.serving import grouped_evaluation

    root = _folder_with_traps(tmp_path, world)
    before = _tree(tmp_path, skip=(str(tmp_path / "out"),)), _tree(world)
    doc = grouped_evaluation.evaluate(model=str(world / "model"), images=str(root),
                                      output=str(tmp_path / "out"))
    assert doc["scored"] == 4 and doc["overall"]["top1"] == 1.0 and doc["unscored"] == 1
    assert {r["file"] for r in doc["skipped_files"]} == {"Cat/x.png", "cat/fifo.png"}
    with open(tmp_path / "out" / "predictions.csv", newline="", encoding="utf-8") as f:
        cells = [c for row in csv.reader(f) for c in row]
    assert "'=SUM(1+1).png" in cells
    assert all(not c.startswith(("=", "+", "@", "\t", "\r")) for c in cells)
    assert "'=HYPERLINK(\"http://x\")" in cells
    text = "".join(open(p, encoding="utf-8").read() for p in
                   (tmp_path / "out" / "evaluation.json", tmp_path / "out" / "evaluation.md"))
    assert SECRET not in text
    assert (_tree(tmp_path, skip=(str(tmp_path / "out"),)), _tree(world)) == before
    _count("evaluate: Cat vs cat exact classes", "correct")
    _count("evaluate: formula cells in predictions.csv", "correct")
    _count("evaluate: symlink out / FIFO", "listed")


def test_label_folding_no_longer_merges_classes():
    from illustration_tl.serving import grouped_evaluation

    match = grouped_evaluation.label_matcher(["Cat", "cat", "ice cream", "ice_cream"])
    assert [match(x) for x in ("Cat", "cat", "ice cream", "ice_cream")] == [0, 1, 2, 3]
    assert match("CAT") is None and match("Ice Cream") is None  # reported, never merged
    _count("evaluate: case/underscore label variants", "correct")


@pytest.mark.slow
def test_manifest_paths_out_of_the_root_are_listed_never_read(world, tmp_path):
    from illustration_tl.serving import grouped_evaluation

    root = tmp_path / "images"
    (root / "Cat").mkdir(parents=True)
    Image.new("RGB", (8, 8), COLOURS["Cat"]).save(root / "Cat" / "ok.png")
    manifest = tmp_path / "m.csv"
    rows = [("Cat/ok.png", "Cat"), (str(world / "secret.txt"), "Cat"),
            ("../secret.txt", "Cat"), ("Cat/../../secret.txt", "cat")]
    manifest.write_text("file,label\n" + "".join(f"{f},{lab}\n" for f, lab in rows))
    before = _tree(tmp_path, skip=(str(tmp_path / "out"),)), _tree(world)
    doc = grouped_evaluation.evaluate(model=str(world / "model"), manifest=str(manifest),
                                      images=str(root), output=str(tmp_path / "out"))
    reasons = {r["file"]: r["reason"] for r in doc["skipped_files"]}
    assert "absolute path" in reasons[str(world / "secret.txt")]
    assert "`..`" in reasons["../secret.txt"] and "`..`" in reasons["Cat/../../secret.txt"]
    assert doc["scored"] == 1 and doc["overall"]["top1"] == 1.0
    written = "".join(open(os.path.join(tmp_path / "out", n), encoding="utf-8").read()
                      for n in ("evaluation.json", "predictions.csv"))
    assert SECRET not in written
    assert (_tree(tmp_path, skip=(str(tmp_path / "out"),)), _tree(world)) == before
    _count("evaluate --manifest: absolute and ../ paths", "listed")


def test_bad_manifests_are_one_line_errors(tmp_path):
    from illustration_tl.serving import grouped_evaluation

    latin = tmp_path / "latin1.csv"
    latin.write_bytes("file,label\ncaf\u00e9.png,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(UserError, match="line 2 is not UTF-8") as e:
        grouped_evaluation.items_from_manifest(str(latin))
    assert "\n" not in str(e.value)
    huge = tmp_path / "huge.csv"
    huge.write_text("file,label\n" + "a" * (200 * 1024) + ".png,x\n")
    with pytest.raises(UserError, match="131,072 characters") as e:
        grouped_evaluation.items_from_manifest(str(huge))
    assert "\n" not in str(e.value) and "aaaa" not in str(e.value)
    _count("evaluate --manifest: Latin-1 file", "refused")
    _count("evaluate --manifest: field over 128 KiB", "refused")


@pytest.mark.slow
def test_cli_one_line_errors_for_bad_values_and_manifests(world, tmp_path):
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("file,label\ncaf\u00e9.png,caf\u00e9\n".encode("latin-1"))
    model = str(world / "model")
    _one_line_refusal(_cli("predict", f"--model={model}", f"--images={tmp_path}",
                           "--max_side=-5"), "--max_side=-5")
    _one_line_refusal(_cli("evaluate", f"--model={model}", f"--images={tmp_path}",
                           "--max_side=0", f"--output={tmp_path / 'o'}"), "--max_side=0")
    _one_line_refusal(_cli("evaluate", f"--model={model}", f"--manifest={latin}",
                           f"--output={tmp_path / 'o'}"), "not UTF-8")
    assert not (tmp_path / "o").exists()
    for kind in ("predict --max_side=-5", "evaluate --max_side=0", "evaluate Latin-1 CLI"):
        _count(kind, "refused")


@pytest.mark.slow
def test_non_utf8_file_names_print_to_a_strict_utf8_stdout(world, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    name = os.fsencode(folder) + b"/caf\xe9.png"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), COLOURS["cat"]).save(buf, "PNG")
    with open(name, "wb") as f:
        f.write(buf.getvalue())
    r = _cli("predict", f"--model={world / 'model'}", f"--images={folder}", timeout=120)
    out = r.stdout.decode("utf-8")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert "caf\\xe9.png" in out and "1. cat" in out
    _count("predict: non-UTF-8 file name on strict stdout", "correct")


def test_api_predict_takes_arrays_pil_and_bytes_and_skips_bad_files(world, tmp_path):
    import illustration_tl

    clf = illustration_tl.load(str(world / "model"), verbose=0)
    good = tmp_path / "blue.png"
    Image.new("RGB", (8, 8), COLOURS["Cat"]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all " + SECRET.encode())
    green = np.zeros((8, 8, 3), np.uint8)
    green[..., 1] = 255
    inputs = [str(good), str(bad), green, green.astype(np.float32),
              Image.new("RGBA", (8, 8), (255, 0, 0, 255)), good.read_bytes(), 42]
    res = clf.predict(inputs)
    names, probs = res
    assert names == ["Cat", None, "cat", "cat", NAMES[2], "Cat", None]
    assert np.isnan(probs[1]).all() and np.allclose(probs[0].sum(), 1)
    assert [(s.index, s.name) for s in res.skipped] == [(1, str(bad)), (6, "<int #6>")]
    assert all(SECRET not in s.reason and "\n" not in s.reason for s in res.skipped)
    with pytest.raises(UserError, match="bad.png"):
        clf.predict([str(good), str(bad)], errors="raise")
    np.testing.assert_allclose(clf.predict_proba(str(good)), probs[:1])
    _count("API: unreadable file in a batch", "listed")
    _count("API: arrays, PIL images, bytes", "correct")


def test_load_tolerates_a_bad_or_missing_fit_json(world, tmp_path):
    import shutil

    import illustration_tl

    run = tmp_path / "run"
    shutil.copytree(world / "model", run / "model")
    assert illustration_tl.load(str(run)).summary == {}          # missing
    (run / "fit.json").write_text("{not json")
    assert illustration_tl.load(str(run)).class_names == NAMES   # bad: the model suffices
    with pytest.raises(UserError, match="not a SavedModel folder") as e:
        illustration_tl.load(str(tmp_path))
    assert "\n" not in str(e.value)
    _count("load(): bad or missing fit.json", "correct")
    _count("load(): folder without a model", "refused")


def test_zz_report_case_counts():
    """Prints the case counts by kind and outcome (run with -s to see them)."""
    for (kind, outcome), n in sorted(CASES.items()):
        print(f"{outcome:8} {n:3}  {kind}")
