"""Resumable pipeline stages, one machinery for ``reproduce`` and ``fit``.

A run claims its output folder (:func:`open_output`: the output manifest of
:mod:`illustration_tl.core.outputs`, so a folder that is not this command's
earlier output is refused, and the output may not sit inside an input or
the other way round), locks it (:func:`lock_output`), then runs named stages.

Each stage writes into its own folder and, last of all, a ``stage.json``
holding a key and a content hash. The key hashes the stage's parameters, the
keys of the stages it consumes *and the content hashes of their outputs*, so
a stage whose input was rewritten (a rerun ``search``) is redone, not only
one whose upstream settings changed. The content hash covers every file the
stage wrote (bytes and relative paths): a stage whose output was deleted,
truncated or edited since (``model/saved_model.pb`` removed, a truncated
feature file) no longer matches and is redone, never reported done.

Stages write into a temporary sibling (``.NAME.stage-tmp-*``, listed in the
manifest as pending) that is swapped in only when complete, so a kill at
any moment leaves either the old complete stage or one the next run redoes;
leftover siblings of a killed run are removed by the next one. A resumable stage
(``fit``'s feature extraction) also gets a work folder, ``.NAME.resume-KEY``, that a
kill leaves in place: the next run with the same key continues from what it holds,
and it is removed once the stage is swapped in (or when the key changes).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
import uuid
from typing import Any, Callable, Sequence

from illustration_tl.core import files, memory, outputs

STAGE_FILE = "stage.json"
LOCK_FILE = ".illustration_tl.lock"
_TMP, _OLD, _RESUME = ".stage-tmp-", ".stage-old-", ".resume-"


def stage_key(name: str, params: dict[str, Any], upstream: list[str] = ()) -> str:
    """A stable hash of a stage's name, parameters and upstream keys."""
    doc = json.dumps({"name": name, "params": params, "upstream": list(upstream)},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def tree_fingerprint(root: str) -> str:
    """A hash of every file's relative path, size and mtime under ``root``: cheap, and
    it changes when a user adds, removes or edits an image.

    The tree is walked as the dataset builder walks it (:func:`files.walk`):
    dangling or looping links, links leading outside ``root``, folder cycles,
    FIFOs and unreadable folders count by name and reason, and never raise.
    """
    h = hashlib.sha256()
    left_out: list[files.Skipped] = []
    for rel in files.walk(root, skip_hidden=False, on_skip=left_out.append):
        try:
            st = os.stat(os.path.join(root, *rel.split("/")))
            line = f"{rel}\0{st.st_size}\0{int(st.st_mtime)}\n"
        except OSError as e:  # removed or changed while walking
            line = f"{rel}\0{e.errno}\n"
        h.update(line.encode("utf-8", "surrogateescape"))
    for s in left_out:
        h.update(f"skipped\0{s.rel}\0{s.reason}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def lock_output(root: str, what: str = "a reproduce run") -> files.FolderLock:
    """Locks ``root`` for one run: a second run on the same folder stops at once with a
    one-line :class:`UserError` naming the holder (pid, host); a holder killed even by
    SIGKILL releases it (the kernel drops ``flock`` locks)."""
    return files.FolderLock(root, LOCK_FILE, what=what).acquire()


def open_output(path: str, marker: str, inputs: dict[str, str], flag: str) -> files.FolderLock:
    """Claims ``path`` as ``marker``'s resumable output (:func:`outputs.claim`), locks it
    and lists the lock in the manifest; returns the lock (release it when done)."""
    ours = (os.path.isdir(path) and not os.path.islink(path)
            and (outputs.read_manifest(path) or {}).get("written_by") == marker)
    # An earlier output of this command: lock first, so a run still writing it is
    # named as the holder (not mistaken for foreign files it has yet to list).
    lock = lock_output(os.path.abspath(path), what=f"a {marker} run") if ours else None
    try:
        root = outputs.claim(path, marker=marker, flag=flag, inputs=inputs)
        lock = lock or lock_output(root, what=f"a {marker} run")
        outputs.record(root, marker, outputs.pending(root))
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock


def content_hash(directory: str) -> str:
    """A hash of every entry under ``directory`` (relative path and bytes; a link's
    target text, never followed; a FIFO or device by its kind, never opened), but its
    top-level ``stage.json``."""
    h = hashlib.sha256()
    for dirpath, dirnames, names in os.walk(directory, followlinks=False):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, directory)
        for name in sorted(names + [d for d in dirnames
                                    if os.path.islink(os.path.join(dirpath, d))]):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel == STAGE_FILE:
                continue
            full = os.path.join(dirpath, name)
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            if os.path.islink(full):
                h.update(b"link\0" + os.fsencode(os.readlink(full)))
                continue
            if not stat.S_ISREG(os.lstat(full).st_mode):  # a FIFO is never opened
                h.update(b"special\0")
                continue
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()[:16]


class Stages:
    """Runs named stages under ``root``, skipping those done with the same key whose outputs
    are still what they wrote.

    ``marker``: the command whose manifest ``root`` carries (:func:`open_output`); the
    manifest is kept current after each stage. ``swap``: write each stage beside its
    folder and swap it in when complete (else in place, its folder listed as pending
    while it runs).
    """

    def __init__(self, root: str, force: bool = False, log: Callable[[str], None] = print,
                 marker: str | None = None, swap: bool = True):
        self.root = root
        self.force = force
        self.log = log
        self.marker = marker
        self.swap = swap
        self.keys: dict[str, str] = {}
        self.contents: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}   # bytes, each stage's own peak (core.memory)
        self.skipped: list[str] = []
        self.on_done: list[Callable[[str, float], None]] = []
        os.makedirs(root, exist_ok=True)
        self._remove_leftovers()

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _record(self, pending: list[str] = ()) -> None:
        if self.marker:
            outputs.record(self.root, self.marker, list(pending) + getattr(self, "_writes", []))

    def _remove_leftovers(self) -> None:
        """Removes the temporary siblings a killed run left (named by this module)."""
        leftovers = [n for n in os.listdir(self.root)
                     if n.startswith(".") and (_TMP in n or _OLD in n)
                     and os.path.isdir(os.path.join(self.root, n))
                     and not os.path.islink(os.path.join(self.root, n))]
        for name in leftovers:
            shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        if leftovers or (self.marker and outputs.pending(self.root)):
            self._record()

    def _read(self, name: str) -> dict[str, Any]:
        try:
            doc = json.loads(files.read_regular_file(os.path.join(self.path(name), STAGE_FILE),
                                                     max_bytes=1 << 20))
        except (files.UnreadableFile, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def recorded_seconds(self, name: str) -> float:
        """How long the stage took when it ran (from its ``stage.json``), 0.0 if unknown."""
        try:
            return float(self._read(name).get("seconds", 0.0))
        except (ValueError, TypeError):
            return 0.0

    def done(self, name: str, key: str) -> bool:
        """True if the stage ran with ``key`` and its outputs are still what it wrote."""
        doc = self._read(name)
        if doc.get("key") != key:
            return False
        if doc.get("content") != content_hash(self.path(name)):
            self.log(f"[{name}] outputs changed, missing or incomplete since it ran; "
                     "running it again")
            return False
        self.contents[name] = doc["content"]
        return True

    def run(self, name: str, params: dict[str, Any], fn: Callable[..., Any],
            upstream: list[str] = (), writes: list[str] = (), resumable: bool = False) -> str:
        """Runs ``fn(stage_dir)`` unless done; returns the stage's folder. ``writes``: other
        entries of ``root`` the stage writes (listed as pending while it runs).
        ``resumable``: ``fn(stage_dir, work_dir)``, the work folder kept across a kill
        (:meth:`work_dir`)."""
        self._writes = list(writes)
        key = self.keys[name] = self.key_of(name, params, upstream)
        out = self.path(name)
        if not self.force and self.done(name, key):
            self.log(f"[{name}] up to date, skipped")
            self.skipped.append(name)
            self.timings[name] = self.recorded_seconds(name)
            self._drop_work(name)
            return out
        self.log(f"[{name}] running")
        start = time.perf_counter()
        memory.reset_peak()
        if resumable:
            work = self.work_dir(name, key)
            stage_fn, fn = fn, (lambda folder: stage_fn(folder, work))
        if self.swap:
            self._run_beside(name, fn, out)
        else:
            self._run_in_place(name, fn, out)
        self.timings[name] = time.perf_counter() - start
        peak = memory.peak_bytes()
        if peak is not None:
            self.peak_rss[name] = peak
        doc = {"key": key, "params": params, "upstream": list(upstream),
               "content": self.contents[name], "seconds": round(self.timings[name], 2),
               "peak_rss_bytes": peak,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if self.swap:
            self._swap_in(name, doc)
        else:
            self._write_stage_file(out, doc)
            self._record()
        self._writes = []
        self._drop_work(name)
        self._record()
        self.log(f"[{name}] done in {self.timings[name]:.1f} s")
        for hook in self.on_done:
            hook(name, self.timings[name])
        return out

    def key_of(self, name: str, params: dict[str, Any], upstream: Sequence[str] = ()) -> str:
        """The key :meth:`run` would give stage ``name`` (the upstream stages ran)."""
        return stage_key(name, params, [f"{self.keys[u]}:{self.contents[u]}" for u in upstream])

    def started(self, name: str, key: str) -> bool:
        """Whether stage ``name`` with ``key`` is done or has a work folder to resume."""
        return self.done(name, key) or os.path.isdir(self.path(f".{name}{_RESUME}{key[:16]}"))

    def work_dir(self, name: str, key: str) -> str:
        """The work folder of stage ``name`` with ``key`` (created; kept across a kill, so
        a rerun with the same key resumes). Work folders of other keys, and this one
        under ``--force``, are removed first."""
        keep = f".{name}{_RESUME}{key[:16]}"
        self._drop_work(name, keep=None if self.force else keep)
        self._writes.append(keep)   # its files stay this command's while shards land
        self._record()
        os.makedirs(self.path(keep), exist_ok=True)
        return self.path(keep)

    def _drop_work(self, name: str, keep: str | None = None) -> None:
        """Removes stage ``name``'s work folders (named by this module) but ``keep``."""
        prefix = f".{name}{_RESUME}"
        for entry in os.listdir(self.root):
            path = self.path(entry)
            if (entry.startswith(prefix) and entry != keep and os.path.isdir(path)
                    and not os.path.islink(path)):
                shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _write_stage_file(folder: str, doc: dict[str, Any]) -> None:
        files.atomic_write(os.path.join(folder, STAGE_FILE),
                           json.dumps(doc, indent=2, default=str))

    def _sibling(self, name: str, kind: str) -> str:
        return f".{name}{kind}{uuid.uuid4().hex[:12]}"

    def _run_beside(self, name: str, fn: Callable[[str], Any], out: str) -> None:
        tmp_name = self._sibling(name, _TMP)
        self._record([tmp_name])
        tmp = self.path(tmp_name)
        os.mkdir(tmp)
        self._pending = tmp_name
        try:
            fn(tmp)
            self.contents[name] = content_hash(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            self._record()
            raise

    def _swap_in(self, name: str, doc: dict[str, Any]) -> None:
        """stage.json into the finished sibling, then: old folder aside, new one in place,
        old removed. A kill in between leaves no folder or a complete one."""
        tmp_name, out = self._pending, self.path(name)
        tmp = self.path(tmp_name)
        self._write_stage_file(tmp, doc)
        old_name = self._sibling(name, _OLD)
        self._record([tmp_name, old_name])
        if os.path.lexists(out):
            os.rename(out, self.path(old_name))
        os.rename(tmp, out)
        shutil.rmtree(self.path(old_name), ignore_errors=True)
        self._record()

    def _run_in_place(self, name: str, fn: Callable[[str], Any], out: str) -> None:
        marker = os.path.join(out, STAGE_FILE)
        if os.path.lexists(marker):
            os.remove(marker)  # inputs changed: the old outputs no longer count as done
        self._record([name])
        os.makedirs(out, exist_ok=True)
        fn(out)
        self.contents[name] = content_hash(out)

    def clear(self, name: str) -> None:
        """Removes a stage's outputs (used by --force on a single stage)."""
        shutil.rmtree(self.path(name), ignore_errors=True)
