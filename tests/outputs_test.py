"""Output folders: refuse user folders, replace only a command's own output, swap atomically."""

import json
import os

import pytest

from illustration_tl.core import outputs
from illustration_tl.errors import UserError


def _write(tmp, files):
    for name, text in files.items():
        path = os.path.join(tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


def _make_output(path, marker="svm", files=None):
    with outputs.writing(str(path), overwrite=False, marker=marker) as tmp:
        _write(tmp, files or {"model.npz": "old", "eval/eval.json": "{}"})


def _user_folder(path):
    _write(str(path), {"results.csv": "a,b\n", "sub/notes.txt": "mine"})


def _assert_user_files_intact(path):
    assert (path / "results.csv").read_text() == "a,b\n"
    assert (path / "sub" / "notes.txt").read_text() == "mine"


def test_new_and_empty_targets_are_written(tmp_path):
    target = tmp_path / "a" / "b" / "out"
    plan = outputs.prepare_output(str(target), overwrite=False, marker="svm")
    assert plan.path == str(target) and not plan.replaces
    _make_output(target)
    assert (target / "model.npz").read_text() == "old"
    manifest = json.loads((target / outputs.MANIFEST).read_text())
    assert manifest["written_by"] == "svm"
    assert set(manifest["entries"]) == {"model.npz", "eval", "eval/eval.json"}
    assert outputs.is_own_output(str(target), "svm")
    assert not outputs.is_own_output(str(target), "export")
    empty = tmp_path / "empty"
    empty.mkdir()
    _make_output(empty)
    assert (empty / "model.npz").is_file()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temp folders left


def test_a_user_folder_is_refused_with_or_without_overwrite(tmp_path):
    target = tmp_path / "mine"
    _user_folder(target)
    for overwrite in (False, True):
        with pytest.raises(UserError) as e:
            with outputs.writing(str(target), overwrite=overwrite, marker="export") as tmp:
                _write(tmp, {"saved_model.pb": "new"})
        msg = str(e.value)
        assert "\n" not in msg and f"--output={target}" in msg and "--overwrite" in msg
        _assert_user_files_intact(target)
        assert not (target / "saved_model.pb").exists()
    assert sorted(os.listdir(tmp_path)) == ["mine"]


def test_own_output_needs_overwrite_and_is_then_swapped(tmp_path):
    target = tmp_path / "out"
    _make_output(target)
    with pytest.raises(UserError, match=r"already holds an earlier `svm` output; pass "
                                        r"--overwrite"):
        outputs.prepare_output(str(target), overwrite=False, marker="svm")
    with pytest.raises(UserError, match="did not write|not an output of `export`"):
        outputs.prepare_output(str(target), overwrite=True, marker="export")  # another command
    inode = os.stat(target).st_ino
    with outputs.writing(str(target), overwrite=True, marker="svm") as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp != str(target)
        assert (target / "model.npz").read_text() == "old"  # the old output is untouched
        _write(tmp, {"model.npz": "new"})
    assert (target / "model.npz").read_text() == "new"
    assert not (target / "eval").exists()  # the old output is gone as a whole
    assert os.stat(target).st_ino != inode
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_failure_leaves_the_old_output_in_place(tmp_path):
    target = tmp_path / "out"
    _make_output(target)
    with pytest.raises(RuntimeError, match="boom"):
        with outputs.writing(str(target), overwrite=True, marker="svm") as tmp:
            _write(tmp, {"model.npz": "half"})
            raise RuntimeError("boom")
    assert (target / "model.npz").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_own_output_with_a_user_file_added_is_refused(tmp_path):
    target = tmp_path / "out"
    _make_output(target)
    _write(str(target), {"eval/my_notes.txt": "keep"})
    with pytest.raises(UserError, match=r"eval/my_notes.txt"):
        outputs.prepare_output(str(target), overwrite=True, marker="svm")
    assert (target / "eval" / "my_notes.txt").read_text() == "keep"


def test_current_folder_parents_files_and_links_are_refused(tmp_path, monkeypatch):
    here = tmp_path / "work"
    _make_output(here)  # even the command's own output, when it is the current folder
    monkeypatch.chdir(here)
    for path in (".", str(here), str(tmp_path), "/"):
        with pytest.raises(UserError, match="current folder or one of its parents"):
            outputs.prepare_output(path, overwrite=True, marker="svm")
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        outputs.prepare_output(str(f), overwrite=True, marker="svm")
    link = tmp_path / "link"
    link.symlink_to(here)
    with pytest.raises(UserError, match="symbolic link"):
        outputs.prepare_output(str(link), overwrite=True, marker="svm")
    with pytest.raises(UserError, match="--model_out is required"):
        outputs.prepare_output("", overwrite=True, marker="svm", flag="--model_out")


def test_a_forged_or_broken_manifest_is_not_trusted(tmp_path):
    target = tmp_path / "mine"
    _user_folder(target)
    (target / outputs.MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="not an output of `svm`"):
        outputs.prepare_output(str(target), overwrite=True, marker="svm")
    # A manifest that does not list the user's files does not make them replaceable.
    (target / outputs.MANIFEST).write_text(json.dumps(
        {"format": outputs.MANIFEST_FORMAT, "written_by": "svm", "entries": []}))
    with pytest.raises(UserError, match="did not write"):
        outputs.prepare_output(str(target), overwrite=True, marker="svm")
    _assert_user_files_intact(target)
