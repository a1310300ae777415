"""The feature store (features/store.py): shards written while extracting, resumed after a
kill, consolidated into one memory-mapped file per block; and a real ``fit`` killed during
extraction that resumes from its finished shards."""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from fit_helpers import ROOT, SMALL

from illustration_tl.errors import UserError
from illustration_tl.features import store
from illustration_tl.pipelines import stages


def _batch(rng, n, start):
    arrays = {"orig/l:avg": rng.random((n, 3), dtype=np.float32),
              "orig/l:max": rng.random((n, 2), dtype=np.float32)}
    return arrays, np.arange(start, start + n) % 3, [f"{i}.png" for i in range(start, start + n)]


def test_shards_resume_after_the_finished_ones_and_consolidate_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    batches = [_batch(rng, 3, 3 * i) for i in range(5)]   # 15 rows
    rows = store.ShardedRows(str(tmp_path / "w" / "train" / "squash"), shard_size=4)
    for b in batches[:3]:
        rows.add(*b)
    assert rows.done == 8            # two full shards; one row still buffered (not written)
    del rows                         # a kill: the buffered row is lost, the shards are not
    resumed = store.ShardedRows(str(tmp_path / "w" / "train" / "squash"), shard_size=4)
    assert resumed.done == 8
    flat = [np.concatenate([b[0][k] for b in batches]) for k in ("orig/l:avg", "orig/l:max")]
    labels = np.concatenate([b[1] for b in batches])
    names = [n for b in batches for n in b[2]]
    resumed.add({"orig/l:avg": flat[0][8:], "orig/l:max": flat[1][8:]}, labels[8:], names[8:])
    resumed.close()
    assert resumed.done == 15 and len(resumed.shards) == 4
    empty = store.ShardedRows(str(tmp_path / "w" / "validation" / "squash"), shard_size=4)
    store.consolidate({"train": {"squash": resumed}, "validation": {"squash": empty}},
                      str(tmp_path / "out"),
                      {"class_names": ["a", "b", "c"], "blocks": ["l:avg", "l:max"],
                       "resize_modes": ["squash"], "views": ["orig"], "meta": {"x": 1}})
    s = store.FeatureStore.load(str(tmp_path / "out"))
    got = s.block("train", "squash", "orig", "l:avg")
    assert isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, flat[0])
    np.testing.assert_array_equal(s.block("train", "squash", "orig", "l:max"), flat[1])
    np.testing.assert_array_equal(s.labels["train"], labels)
    assert s.file_names["train"] == names and s.meta == {"x": 1}
    assert s.block("validation", "squash", "orig", "l:max").shape == (0, 2)
    assert s.assemble(["train", "validation"], "squash", "orig", ["l:avg"]).shape == (15, 3)


def test_a_truncated_shard_is_redone_not_trusted(tmp_path):
    rng = np.random.default_rng(1)
    rows = store.ShardedRows(str(tmp_path), shard_size=2)
    for i in range(3):
        rows.add(*_batch(rng, 2, 2 * i))
    with open(tmp_path / "shard-00001.npz", "r+b") as f:
        f.truncate(100)
    again = store.ShardedRows(str(tmp_path), shard_size=2)
    assert again.done == 2 and len(again.shards) == 1


def test_a_shard_being_written_never_carries_a_finished_shard_name(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "partial-00001.npz").write_bytes(b"PK\x03\x04 cut by a kill")   # left by a kill
    rows = store.ShardedRows(str(tmp_path), shard_size=2)
    assert rows.done == 0
    rows.add(*_batch(rng, 2, 0))
    rows.add(*_batch(rng, 2, 2))
    assert sorted(p.name for p in tmp_path.glob("shard-*.npz")) == ["shard-00000.npz",
                                                                    "shard-00001.npz"]
    assert not (tmp_path / "partial-00001.npz").exists()     # the finished shard replaced it


def test_save_load_round_trip_and_the_legacy_one_file_store(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {"train": {store.key("pad", "flip", "b:avg"): rng.random((4, 3))}}
    s = store.FeatureStore(arrays, {"train": np.array([0, 1, 0, 1])},
                           {"train": list("abcd")}, ["x", "y"], ["b:avg"], ["pad"],
                           ["flip"], {"recipe": {"backbone": "vgg16"}})
    s.save(str(tmp_path / "new"))
    back = store.FeatureStore.load(str(tmp_path / "new"))
    np.testing.assert_allclose(back.block("train", "pad", "flip", "b:avg"),
                               arrays["train"]["pad/flip/b:avg"], rtol=1e-6)
    assert back.meta["recipe"]["backbone"] == "vgg16" and back.class_names == ["x", "y"]
    legacy = {"train//pad/flip/b:avg": arrays["train"]["pad/flip/b:avg"],
              "train//labels": np.array([0, 1, 0, 1]),
              "train//file_names": np.array(list("abcd")),
              "meta": np.array('{"class_names": ["x", "y"], "blocks": ["b:avg"], '
                               '"resize_modes": ["pad"], "views": ["flip"], "k": 2}')}
    np.savez(tmp_path / "features.npz", **legacy)
    old = store.FeatureStore.load(str(tmp_path / "features.npz"))
    assert old.meta == {"k": 2} and old.file_names["train"] == list("abcd")
    with pytest.raises(UserError, match="holds no feature store"):
        store.FeatureStore.load(str(tmp_path / "nothing"))


def test_a_store_json_naming_a_path_outside_is_refused(tmp_path):
    s = store.FeatureStore({"train": {"m/orig/b": np.zeros((1, 2))}}, {"train": np.zeros(1)},
                           {"train": ["a"]}, ["x"], ["b"], ["m"], ["orig"], {})
    s.save(str(tmp_path))
    doc = (tmp_path / store.STORE_FILE).read_text().replace("000-m_orig_b.npy",
                                                            "../../etc/passwd")
    (tmp_path / store.STORE_FILE).write_text(doc)
    with pytest.raises(UserError, match="invalid array file"):
        store.FeatureStore.load(str(tmp_path))


def test_a_resumable_stage_keeps_its_work_folder_across_a_failure_only(tmp_path):
    root = str(tmp_path)
    seen = []

    def failing(out: str, work: str) -> None:
        seen.append(work)
        open(os.path.join(work, "shard-00000.npz"), "w").close()
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        stages.Stages(root).run("features", {"a": 1}, failing, resumable=True)
    assert os.path.isfile(os.path.join(seen[0], "shard-00000.npz"))

    def finishing(out: str, work: str) -> None:
        seen.append(work)
        assert os.path.isfile(os.path.join(work, "shard-00000.npz"))   # resumed from it
        open(os.path.join(out, "done"), "w").close()

    stages.Stages(root).run("features", {"a": 1}, finishing, resumable=True)
    assert seen[1] == seen[0] and not os.path.exists(seen[0])
    with pytest.raises(RuntimeError):
        stages.Stages(root).run("features", {"a": 2}, failing, resumable=True)
    with pytest.raises(RuntimeError):
        stages.Stages(root).run("features", {"a": 3}, failing, resumable=True)
    assert glob.glob(os.path.join(root, ".features.resume-*")) == [seen[-1]]  # other keys go


# --- A real fit, killed during extraction ----------------------------------------------

def _fit_cmd(images, out) -> list[str]:
    return [sys.executable, "-m", "illustration_tl.cli", "fit", f"--images={images}",
            f"--output={out}", "--weights=none", "--image_size=32", "--num_workers=1",
            "--resize_modes=squash", "--batch_size=2", "--shard_size=2"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _kill_after_first_shards(images, out, cwd) -> None:
    proc = subprocess.Popen(_fit_cmd(images, out), env=_env(), cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(glob.glob(os.path.join(out, ".features.resume-*", "train", "squash",
                                          "shard-*.npz"))) >= 2:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "fit finished before it could be killed"


def test_fit_killed_during_extraction_resumes_from_its_finished_shards(tmp_path):
    images = tmp_path / "images"
    for c in ("bird", "flower", "house"):
        shutil.copytree(os.path.join(SMALL, c), images / c)
    out = tmp_path / "run"
    _kill_after_first_shards(images, out, tmp_path)
    work = glob.glob(os.path.join(out, ".features.resume-*"))
    assert len(work) == 1
    kept = sum(len(np.load(p)["labels"]) for p in glob.glob(os.path.join(work[0], "*", "*",
                                                                         "shard-*.npz")))
    assert kept >= 4

    r = subprocess.run(_fit_cmd(images, out), env=_env(), cwd=tmp_path, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = re.findall(r"features (\w+) \(squash\): (\d+) images x \d views embedded in \d+s"
                       r"(?:, (\d+) resumed from finished shards)?", r.stderr)
    embedded = {s: int(n) for s, n, _ in lines}
    resumed = {s: int(k or 0) for s, _, k in lines}
    assert sum(resumed.values()) == kept > 0
    s = store.FeatureStore.load(str(out / "features"))
    total = sum(len(v) for v in s.labels.values())
    assert sum(embedded.values()) == total - kept            # the rerun embedded only the rest
    print(f"killed with {kept} of {total} images in finished shards; the rerun embedded "
          f"{sum(embedded.values())} ({embedded})")
    assert not glob.glob(os.path.join(out, ".features.resume-*"))   # work folder removed

    fresh = tmp_path / "fresh"
    r2 = subprocess.run(_fit_cmd(images, fresh), env=_env(), cwd=tmp_path,
                        capture_output=True, text=True, timeout=900)
    assert r2.returncode == 0, r2.stderr[-3000:]
    f = store.FeatureStore.load(str(fresh / "features"))
    for split in s.labels:
        assert s.file_names[split] == f.file_names[split]
        for k in s.arrays[split]:
            np.testing.assert_allclose(s.arrays[split][k], f.arrays[split][k],
                                       rtol=1e-5, atol=1e-6)


def test_rows_of_a_memory_mapped_store_equal_the_concatenation_then_release(tmp_path):
    """``rows`` gathers any images of several splits (any order) as indexing their
    concatenation would; ``release_pages`` leaves the arrays readable."""
    rng = np.random.default_rng(3)
    k = store.key("squash", "orig", "b:avg")
    arrays = {"train": {k: rng.random((7, 3)).astype(np.float32)},
              "validation": {k: rng.random((4, 3)).astype(np.float32)}}
    labels = {"train": np.arange(7) % 2, "validation": np.arange(4) % 2}
    names = {s: [f"{s}{i}" for i in range(len(labels[s]))] for s in labels}
    store.FeatureStore(arrays, labels, names, ["x", "y"], ["b:avg"], ["squash"], ["orig"],
                       {}).save(str(tmp_path / "s"))
    s = store.FeatureStore.load(str(tmp_path / "s"))
    both = np.concatenate([arrays["train"][k], arrays["validation"][k]])
    for images in ([0, 1, 2], [9, 2, 10, 0, 7], [8, 3]):
        got = s.rows(["train", "validation"], "squash", "orig", "b:avg", np.array(images))
        np.testing.assert_array_equal(got, both[images])
    np.testing.assert_allclose(
        s.assemble(["train", "validation"], "squash", "orig", ["b:avg"], np.array([10, 1])),
        s.assemble(["train", "validation"], "squash", "orig", ["b:avg"])[[10, 1]])
    s.release_pages()
    np.testing.assert_array_equal(s.block("validation", "squash", "orig", "b:avg"),
                                  arrays["validation"][k])
    with pytest.raises(IndexError):
        s.rows(["train", "validation"], "squash", "orig", "b:avg", np.array([11]))
