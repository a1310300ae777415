"""The feature store: every raw block of every split, resize mode and view, on disk.

``fit`` runs the CNN once per image, resize mode and view (paper §6.1's frozen
features, widened to several blocks: :mod:`illustration_tl.features.multilayer`)
and keeps every block, so the search can combine them without running the CNN
again. The store is built to scale with the folder, not with memory:

* **Sharded while extracting.** Rows are written in shards of ``shard_size``
  images into a work folder (``<work>/<split>/<mode>/shard-00000.npz``, each
  written atomically), so a run killed after an hour of extraction resumes from
  its last finished shard instead of from zero (:class:`ShardedRows`).
* **One file per block once complete.** When every split is done the shards are
  streamed into one ``.npy`` file per (split, mode, view, block) (:func:`consolidate`),
  one shard in memory at a time.
* **Read memory-mapped.** :meth:`FeatureStore.load` maps those files, so opening a
  100k-image store costs no memory; the search reads only the rows it samples.

Layout of a finished store (``embed`` writes one per split folder, its files in that
folder itself: ``in_place``)::

    store.json                 class names, blocks, resize modes, views, rows per split,
                               the file of every array, provenance (``meta``)
    <split>/labels.npy         int64 (n,)
    <split>/file_names.npy     unicode (n,)
    <split>/NNN-<key>.npy      float32 (n, d), one per ``<mode>/<view>/<block>``

A store written before this layout (one ``features.npz``) is still read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from illustration_tl.core import files
from illustration_tl.errors import UserError

STORE_FILE = "store.json"
LEGACY_FILE = "features.npz"   # the one-file store of earlier releases (read only)
FORMAT = "illustration-tl feature store v2"
SHARD_GLOB = re.compile(r"shard-(\d{5})\.npz")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
PAPER_BLOCK = "paper"   # the paper's own embedding (fc2 or the pooled last block), kept raw


def power_l2(x: np.ndarray) -> np.ndarray:
    """Signed square root, then unit l2 rows (a zero row stays zero): each block's
    normalization before blocks are joined (:mod:`illustration_tl.features.multilayer`)."""
    x = np.asarray(x, dtype=np.float64)
    x = np.sign(x) * np.sqrt(np.abs(x))
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def key(mode: str, view: str, block: str) -> str:
    """The name of one array: ``<resize mode>/<view>/<block>``."""
    return f"{mode}/{view}/{block}"


def key_in_mode(view: str, block: str) -> str:
    """The name of one array within a resize mode's shards (:class:`ShardedRows`)."""
    return f"{view}/{block}"


@dataclasses.dataclass
class FeatureStore:
    """Raw blocks of every split, resize mode and view (in memory, or memory-mapped when
    loaded from disk)."""

    arrays: dict[str, dict[str, np.ndarray]]   # split -> key(mode, view, block) -> (n, d)
    labels: dict[str, np.ndarray]               # split -> (n,)
    file_names: dict[str, list[str]]
    class_names: list[str]
    blocks: list[str]
    resize_modes: list[str]
    views: list[str]
    meta: dict[str, Any]

    def block(self, split: str, mode: str, view: str, block: str) -> np.ndarray:
        return self.arrays[split][key(mode, view, block)]

    def release_pages(self) -> None:
        """Drops the file pages a memory-mapped store's reads left in this process's
        resident set (:func:`_release`): a pass over a large folder's rows then holds
        only the chunk it works on. In-memory arrays are untouched."""
        for arrays in self.arrays.values():
            for a in arrays.values():
                _release(a)

    def rows(self, splits: Sequence[str], mode: str, view: str, block: str,
             images: np.ndarray) -> np.ndarray:
        """The raw rows ``images`` (indices into ``splits`` concatenated, any order) of
        one block, gathered split by split: a memory-mapped store reads those rows
        only (a CV sample, or a chunk of a streamed fit)."""
        images = np.asarray(images, np.int64)
        parts, pos, lo = [], [], 0
        for s in splits:
            a = self.block(s, mode, view, block)
            inside = np.flatnonzero((images >= lo) & (images < lo + len(a)))
            parts.append(np.asarray(a[images[inside] - lo]))
            pos.append(inside)
            lo += len(a)
        where = np.concatenate(pos)
        if len(where) != len(images):
            raise IndexError(f"image index out of range (the splits hold {lo} images)")
        out = np.concatenate(parts)
        return out if np.array_equal(where, np.arange(len(where))) else out[np.argsort(where)]

    def assemble(self, splits: Sequence[str], mode: str, view: str,
                 blocks: Sequence[str], images: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``splits`` (concatenated; only the images ``images`` when given, in
        that order): each block power-l2-normalized, then joined; the ``paper`` block is
        kept raw, as the paper's SVM sees it."""
        parts = []
        for b in blocks:
            raw = (np.concatenate([self.block(s, mode, view, b) for s in splits])
                   if images is None else self.rows(splits, mode, view, b, images))
            parts.append(np.asarray(raw, np.float64) if b == PAPER_BLOCK else power_l2(raw))
        return np.concatenate(parts, axis=1)

    def regrouped(self, splits: Sequence[str], new_splits: Sequence[str]) -> FeatureStore:
        """A copy (in memory) whose rows of ``splits``, concatenated in that order, belong
        to ``new_splits`` (one split name per row; ``fit --dedupe``'s duplicate groups).
        Rows keep their order within each split."""
        old = np.asarray([s for s in splits for _ in range(len(self.labels[s]))])
        new = np.asarray(list(new_splits))
        if len(new) != len(old):
            raise ValueError(f"{len(new)} split names for {len(old)} rows")
        names = [n for s in splits for n in self.file_names[s]]
        labels = np.concatenate([self.labels[s] for s in splits])
        joined = {k: np.concatenate([self.arrays[s][k] for s in splits])
                  for k in self.arrays[splits[0]]}
        arrays, out_labels, out_names = {}, {}, {}
        for split in dict.fromkeys(list(splits) + sorted(set(new_splits))):
            rows = np.flatnonzero(new == split)
            arrays[split] = {k: v[rows] for k, v in joined.items()}
            out_labels[split] = labels[rows]
            out_names[split] = [names[i] for i in rows]
        return FeatureStore(arrays, out_labels, out_names, self.class_names, self.blocks,
                            self.resize_modes, self.views, self.meta)

    def header(self) -> dict[str, Any]:
        """What ``store.json`` holds besides the array files."""
        return {"format": FORMAT, "class_names": self.class_names, "blocks": self.blocks,
                "resize_modes": self.resize_modes, "views": self.views,
                "rows": {s: len(v) for s, v in self.labels.items()}, "meta": self.meta}

    def save(self, directory: str) -> None:
        """Writes the store's layout into ``directory`` (an empty or new folder)."""
        os.makedirs(directory, exist_ok=True)
        names: dict[str, dict[str, str]] = {}
        for split, arrays in self.arrays.items():
            os.makedirs(os.path.join(directory, split), exist_ok=True)
            np.save(os.path.join(directory, split, "labels.npy"),
                    np.asarray(self.labels[split], np.int64))
            np.save(os.path.join(directory, split, "file_names.npy"),
                    np.asarray(self.file_names[split], dtype=str))
            names[split] = {}
            for i, (k, v) in enumerate(sorted(arrays.items())):
                names[split][k] = array_file(i, k)
                np.save(os.path.join(directory, split, names[split][k]),
                        np.asarray(v, np.float32))
        files.atomic_write_json(os.path.join(directory, STORE_FILE),
                                dict(self.header(), files=names))

    @classmethod
    def load(cls, path: str) -> FeatureStore:
        """The store in ``path`` (a store folder; or an earlier release's ``features.npz``,
        or a store folder named by that file's path), its arrays memory-mapped."""
        folder = path[:-len(LEGACY_FILE)] if path.endswith(LEGACY_FILE) else path
        folder = folder.rstrip("/") or "."
        if os.path.isfile(os.path.join(folder, STORE_FILE)):
            return _load_folder(folder)
        legacy = path if path.endswith(LEGACY_FILE) else os.path.join(path, LEGACY_FILE)
        if os.path.isfile(legacy):
            return _load_legacy(legacy)
        raise UserError(f"{path!r} holds no feature store ({STORE_FILE}); run `fit` again "
                        "to extract the features")


def array_file(index: int, array_key: str) -> str:
    """The file name of one array inside its split folder."""
    return f"{index:03d}-{_SAFE.sub('_', array_key)}.npy"


def _checked_name(folder: str, name: Any) -> str:
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.-]+\.npy", name)):
        raise UserError(f"{os.path.join(folder, STORE_FILE)} names an invalid array file "
                        f"{name!r}; run `fit` again to rewrite the features")
    return os.path.join(folder, name)


def _release(a: np.ndarray) -> None:
    """``madvise(MADV_DONTNEED)`` on a memory-mapped array (written pages flushed first):
    its pages leave this process's resident set and stay in the page cache, so a later
    read is cheap. A no-op for an in-memory array or where the system cannot."""
    import mmap

    m, advice = getattr(a, "_mmap", None), getattr(mmap, "MADV_DONTNEED", None)
    if m is None or advice is None:
        return
    try:
        if getattr(a, "mode", "r") != "r":
            m.flush()
        m.madvise(advice)
    except (OSError, ValueError):   # closed, or not supported here
        pass


def _map(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"feature array {path} is unreadable ({e}); run `fit` again to "
                        "extract the features") from None


def _load_folder(folder: str) -> FeatureStore:
    try:
        doc = json.loads(files.read_regular_file(os.path.join(folder, STORE_FILE),
                                                 max_bytes=64 << 20))
    except (files.UnreadableFile, ValueError) as e:
        raise UserError(f"{os.path.join(folder, STORE_FILE)} is unreadable ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{os.path.join(folder, STORE_FILE)} is not a {FORMAT!r} file")
    arrays, labels, names = {}, {}, {}
    in_place = doc.get("folders") or {}
    for split, rows in doc["rows"].items():
        if in_place.get(split) == ".":
            sdir = folder
        elif isinstance(split, str) and re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", split):
            sdir = os.path.join(folder, split)
        else:
            raise UserError(f"{os.path.join(folder, STORE_FILE)} names an invalid split "
                            f"{split!r}; run `fit` again to rewrite the features")
        labels[split] = np.asarray(_map(os.path.join(sdir, "labels.npy")), np.int64)
        names[split] = [str(n) for n in _map(os.path.join(sdir, "file_names.npy"))]
        arrays[split] = {k: _map(_checked_name(sdir, f)) for k, f in doc["files"][split].items()}
        bad = [k for k, v in arrays[split].items() if v.ndim != 2 or len(v) != rows]
        if len(labels[split]) != rows or len(names[split]) != rows or bad:
            raise UserError(f"feature store {folder}: split {split} does not hold {rows} rows "
                            f"in every array; run `fit` again to extract the features")
    return FeatureStore(arrays, labels, names, list(doc["class_names"]), list(doc["blocks"]),
                        list(doc["resize_modes"]), list(doc["views"]), dict(doc["meta"]))


def _load_legacy(path: str) -> FeatureStore:
    """An earlier release's one-file store (``split//key`` arrays and a ``meta`` string)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays: dict[str, dict[str, np.ndarray]] = {}
        labels, names = {}, {}
        for k in z.files:
            if k == "meta":
                continue
            split, _, rest = k.partition("//")
            if rest == "labels":
                labels[split] = z[k].astype(np.int64)
            elif rest == "file_names":
                names[split] = [str(n) for n in z[k]]
            else:
                arrays.setdefault(split, {})[rest] = z[k]
    return FeatureStore(arrays, labels, names, list(meta.pop("class_names")),
                        list(meta.pop("blocks")), list(meta.pop("resize_modes")),
                        list(meta.pop("views")), meta)


# --- Shards: written while extracting, resumed after a kill ----------------------------

def write_shard(directory: str, index: int, arrays: Mapping[str, np.ndarray],
                labels: np.ndarray, names: Sequence[str]) -> str:
    """Writes shard ``index`` of a (split, resize mode) into ``directory`` (the rows of
    ``arrays``, keyed ``<view>/<block>`` in their order, with their labels and file
    names) under a temporary name, then renames it: a finished shard is always whole.
    Returns its path. :class:`ShardedRows` writes its shards with it, and so does the
    Beam extraction (:mod:`illustration_tl.features.beam_extract`), shard by shard."""
    path = os.path.join(directory, f"shard-{index:05d}.npz")
    # the shard being written never carries a finished shard's name
    tmp = os.path.join(directory, f"partial-{index:05d}.npz")
    np.savez(tmp, labels=np.asarray(labels, np.int64),
             file_names=np.asarray(list(names), dtype=str),
             **{f"a{i}": np.asarray(v, np.float32) for i, v in enumerate(arrays.values())},
             keys=np.asarray(list(arrays), dtype=str))
    os.replace(tmp, path)
    return path


class ShardedRows:
    """The rows of one (split, resize mode) in shards of ``shard_size`` images under
    ``directory``; each shard is written to a temporary name and renamed, so a finished
    shard is always whole. :attr:`done` counts the rows of the finished shards found on
    disk (a run killed mid-extraction resumes after them)."""

    def __init__(self, directory: str, shard_size: int) -> None:
        if shard_size < 1:
            raise UserError(f"--shard_size={shard_size} must be at least 1")
        self.directory, self.shard_size = directory, shard_size
        os.makedirs(directory, exist_ok=True)
        self.shards = self._finished()
        self.done = sum(n for _, n in self.shards)
        self._buf: list[tuple[dict[str, np.ndarray], np.ndarray, list[str]]] = []

    def _finished(self) -> list[tuple[str, int]]:
        """The finished shards in order (stops at the first gap or unreadable shard;
        later ones are rewritten)."""
        found = sorted(int(m.group(1)) for n in os.listdir(self.directory)
                       if (m := SHARD_GLOB.fullmatch(n)))
        shards = []
        for i, index in enumerate(found):
            path = os.path.join(self.directory, f"shard-{index:05d}.npz")
            if index != i:
                break
            try:
                with np.load(path, allow_pickle=False) as z:
                    shards.append((path, int(len(z["labels"]))))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                break
        return shards

    def add(self, arrays: Mapping[str, np.ndarray], labels: np.ndarray,
            names: Sequence[str]) -> None:
        """Buffers one batch; writes every full shard."""
        self._buf.append(({k: np.asarray(v, np.float32) for k, v in arrays.items()},
                          np.asarray(labels, np.int64), list(names)))
        while sum(len(b[1]) for b in self._buf) >= self.shard_size:
            self._write(self.shard_size)

    def close(self) -> None:
        """Writes the last, partial shard."""
        while self._buf:
            self._write(self.shard_size)

    def _write(self, rows: int) -> None:
        arrays = {k: np.concatenate([b[0][k] for b in self._buf]) for k in self._buf[0][0]}
        labels = np.concatenate([b[1] for b in self._buf])
        names = [n for b in self._buf for n in b[2]]
        take = min(rows, len(labels))
        path = write_shard(self.directory, len(self.shards),
                           {k: v[:take] for k, v in arrays.items()}, labels[:take],
                           names[:take])
        self.shards.append((path, take))
        self.done += take
        rest = {k: v[take:] for k, v in arrays.items()}
        self._buf = [(rest, labels[take:], names[take:])] if take < len(labels) else []

    def index(self) -> Iterator[tuple[np.ndarray, list[str]]]:
        """``(labels, file names)`` per finished shard, in order (no features read)."""
        for path, _ in self.shards:
            with np.load(path, allow_pickle=False) as z:
                yield z["labels"], [str(n) for n in z["file_names"]]

    def read(self) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, list[str]]]:
        """``(arrays by key, labels, file names)`` per finished shard, in order."""
        for path, _ in self.shards:
            with np.load(path, allow_pickle=False) as z:
                keys = [str(k) for k in z["keys"]]
                yield ({k: z[f"a{i}"] for i, k in enumerate(keys)}, z["labels"],
                       [str(n) for n in z["file_names"]])


def consolidate(parts: Mapping[str, Mapping[str, ShardedRows]], out: str,
                header: Mapping[str, Any], in_place: bool = False) -> None:
    """Streams finished shards (``parts[split][mode]``) into the store layout in ``out``
    (one shard in memory at a time). Every resize mode of a split must hold the same
    images in the same order. ``header``: class_names, blocks, resize_modes, views, meta.
    ``in_place``: one split, its files in ``out`` itself (``embed``'s split folders)."""
    if in_place and len(parts) != 1:
        raise ValueError("in_place stores hold one split")
    names_of: dict[str, dict[str, str]] = {}
    rows: dict[str, int] = {}
    for split, modes in parts.items():
        sdir = out if in_place else os.path.join(out, split)
        os.makedirs(sdir, exist_ok=True)
        first = next(iter(modes.values()))
        rows[split] = first.done
        shards = list(first.index())
        labels = np.concatenate([y for y, _ in shards] or [np.zeros(0, np.int64)])
        names = [n for _, ns in shards for n in ns]
        np.save(os.path.join(sdir, "labels.npy"), labels.astype(np.int64))
        np.save(os.path.join(sdir, "file_names.npy"), np.asarray(names, dtype=str))
        names_of[split] = {}
        for mode, sharded in modes.items():
            _stream_mode(split, mode, sharded, sdir, names, names_of[split])
    if not in_place:
        _empty_splits(out, names_of)
    folders = {split: "." for split in parts} if in_place else {}
    files.atomic_write_json(os.path.join(out, STORE_FILE), dict(
        format=FORMAT, rows=rows, files=names_of, folders=folders, **header))


def _empty_splits(out: str, names_of: dict[str, dict[str, str]]) -> None:
    """Zero-row arrays, of the width the other splits found, for a split without images
    (a folder too small for a validation split)."""
    widths: dict[str, int] = {}
    for split, found in names_of.items():
        for k, name in found.items():
            widths.setdefault(k, int(_map(os.path.join(out, split, name)).shape[1]))
    for split, found in names_of.items():
        for k, width in widths.items():
            if k not in found:
                found[k] = array_file(len(found), k)
                np.save(os.path.join(out, split, found[k]), np.zeros((0, width), np.float32))


def _stream_mode(split: str, mode: str, sharded: ShardedRows, sdir: str,
                 names: Sequence[str], files_out: dict[str, str]) -> None:
    maps: dict[str, np.ndarray] = {}
    at = 0
    for arrays, _, shard_names in sharded.read():
        if list(names[at:at + len(shard_names)]) != shard_names:
            raise UserError(f"features of split {split} ({mode}) are not in the order of "
                            f"the other resize modes; delete {sharded.directory} and rerun")
        for k, v in arrays.items():
            if k not in maps:
                full = f"{mode}/{k}"
                files_out[full] = array_file(len(files_out), full)
                maps[k] = np.lib.format.open_memmap(
                    os.path.join(sdir, files_out[full]), mode="w+", dtype=np.float32,
                    shape=(len(names), v.shape[1]))
            maps[k][at:at + len(v)] = v
        at += len(shard_names)
        for m in maps.values():   # written: out of this process's resident set
            _release(m)
    if at != len(names):
        raise UserError(f"features of split {split} ({mode}) hold {at} rows, not "
                        f"{len(names)}; delete {sharded.directory} and rerun")
    for m in maps.values():
        m.flush()
