"""``evaluate``: per-group and per-class numbers match a hand count; manifests; photographs."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from illustration_tl.errors import UserError
from illustration_tl.serving import grouped_evaluation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(ROOT, "tests", "fixtures", "photos")
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
# <group>/<class>/<file colour>: a colour model predicts the file's colour.
#   color:   red_thing  <- red, red, blue   (2/3 right)
#   lineart: red_thing  <- green            (0/1)
#            blue_thing <- blue             (1/1)
LAYOUT = [("color", "red_thing", "red"), ("color", "red_thing", "red"),
          ("color", "red_thing", "blue"), ("lineart", "red_thing", "green"),
          ("lineart", "blue_thing", "blue")]


def _colour_model(num_classes):
    """GAP + identity dense on VGG-preprocessed (BGR, mean-subtracted) pixels: a solid
    image's top class is its dominant channel (0 blue, 1 green, 2 red); other classes 0."""
    import keras

    kernel = np.zeros((3, num_classes), np.float32)
    kernel[:, :3] = np.eye(3)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(num_classes, activation="softmax")])
    model.layers[-1].set_weights([kernel, np.zeros(num_classes, np.float32)])
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from illustration_tl.serving import export

    root = tmp_path_factory.mktemp("exports")
    names3 = ["blue_thing", "green_thing", "red_thing"]
    export.export_classifier(str(root / "m3"), model=_colour_model(3), backbone="vgg16",
                             image_size=16, class_names=names3)
    names7 = names3 + ["n02123045", "n07920052", "n03773504", "other"]
    export.export_classifier(str(root / "m7"), model=_colour_model(7), backbone="vgg16",
                             image_size=16, class_names=names7)
    return str(root / "m3"), str(root / "m7")


@pytest.fixture()
def grouped(tmp_path):
    root = tmp_path / "images"
    rows = []
    for i, (group, cls, colour) in enumerate(LAYOUT):
        d = root / group / cls
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 12), COLOURS[colour]).save(d / f"{i}_{colour}.png")
        rows.append({"file": f"{group}/{cls}/{i}_{colour}.png", "label": cls, "style": group})
    return root, rows


@pytest.mark.slow
def test_per_group_and_class_match_a_hand_count(exports, grouped, tmp_path):
    root, _ = grouped
    doc = grouped_evaluation.evaluate(model=exports[0], images=str(root), group_by="0",
                                      output=str(tmp_path / "out"))
    assert grouped_evaluation.counts_by_group(doc) == {"color": (3, 2 / 3), "lineart": (2, 0.5)}
    per_class = {r["class"]: (r["n"], r["top1"], r["top5"]) for r in doc["per_class"]}
    assert per_class == {"red_thing": (4, 0.5, None), "blue_thing": (1, 1.0, None)}
    assert doc["overall"] == {"n": 5, "top1": 0.6, "top5": None}  # 3 classes: no top-5
    out = tmp_path / "out"
    for f in ("evaluation.json", "evaluation.md", "predictions.csv", "confusion.png",
              "result/eval.json"):
        assert (out / f).is_file(), f
    md = (out / "evaluation.md").read_text()
    assert "| color | 3 | 66.7% | n/a |" in md and "| lineart | 2 | 50.0% | n/a |" in md
    with open(out / "predictions.csv") as f:
        preds = {r["file"]: r for r in csv.DictReader(f)}
    assert preds["color/red_thing/2_blue.png"]["top1"] == "blue_thing"
    assert preds["color/red_thing/2_blue.png"]["top1_correct"] == "False"


@pytest.mark.slow
def test_manifest_column_groups_and_top5_with_seven_classes(exports, grouped, tmp_path):
    root, rows = grouped
    manifest = tmp_path / "images.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "label", "style"])
        w.writeheader()
        w.writerows(rows)
    doc = grouped_evaluation.evaluate(model=exports[1], manifest=str(manifest),
                                      images=str(root), group_by="style",
                                      output=str(tmp_path / "out"))
    assert grouped_evaluation.counts_by_group(doc) == {"color": (3, 2 / 3), "lineart": (2, 0.5)}
    # 7 classes: top-5 is reported. The blue file labelled red_thing ranks red_thing 6th
    # (blue_thing, then the four zero-weight classes, score above it); the green file
    # labelled red_thing ranks it behind green_thing and the four: 6th too.
    assert doc["overall"]["top5"] == pytest.approx(0.6)
    with pytest.raises(UserError, match="--group_by=colour: not a column"):
        grouped_evaluation.evaluate(model=exports[1], manifest=str(manifest),
                                    group_by="colour", output=str(tmp_path / "o2"))


def test_bad_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"")
    with pytest.raises(UserError, match="--group_by=style: without --manifest"):
        grouped_evaluation.items_from_folder(str(tmp_path), "style")
    with pytest.raises(UserError, match="no folder at level 0 above its class folder"):
        grouped_evaluation.items_from_folder(str(tmp_path), "0")
    bad = tmp_path / "m.csv"
    bad.write_text("path,label\nx.png,a\n")
    with pytest.raises(UserError, match="no `file` column"):
        grouped_evaluation.items_from_manifest(str(bad))


def test_labels_match_by_exact_name_wnid_or_imagenet_synonym():
    match = grouped_evaluation.label_matcher(["Red_Thing", "n02123045", "espresso"])
    assert match("Red_Thing") == 0 and match("red thing") is None  # exact names only
    assert match("tabby cat") == 1 and match("tabby") == 1
    assert match("n07920052") == 2
    assert match("missile") is None and match("") is None


@pytest.mark.slow
def test_cli_on_photographs(exports, tmp_path):
    out = tmp_path / "photos"
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "evaluate",
                        f"--model={exports[1]}", f"--images={PHOTOS}", f"--output={out}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "evaluation.json").read_text())
    # tabby, espresso and missile are classes of the model (two by wnid); the loose
    # astronaut photograph has no label: predicted, listed, not scored. SOURCES.txt is
    # not an image: skipped and listed.
    assert (doc["images"], doc["scored"], doc["unscored"], doc["skipped"]) == (5, 3, 1, 1)
    assert doc["skipped_files"][0]["file"] == "SOURCES.txt"
    assert doc["unscored_examples"][0]["file"] == "astronaut.jpg"
    assert "Per class" in r.stdout
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "evaluate",
                        f"--model={exports[1]}", f"--images={PHOTOS}", f"--output={out}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 2 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
