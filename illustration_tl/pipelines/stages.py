"""Resumable pipeline stages: skip a stage whose outputs match its inputs.

``reproduce`` chains the paper's stages (datasets, baselines, optimization,
SVMs, report, export). Each stage writes into its own folder and, last of
all, a ``stage.json`` holding a key: the hash of the stage's parameters and
of the keys of the stages it consumed. A rerun skips a stage whose
``stage.json`` carries the same key, so an interrupted run resumes where it
stopped and a changed flag reruns exactly the stages it affects.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import Any, Callable

from illustration_tl.core import files

STAGE_FILE = "stage.json"
LOCK_FILE = ".reproduce.lock"


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


def lock_output(root: str) -> files.FolderLock:
    """Locks ``root`` for one ``reproduce`` run: a second run on the same folder stops at
    once with a one-line :class:`UserError` naming the holder (pid, host); a holder
    killed even by SIGKILL releases it (the kernel drops ``flock`` locks)."""
    return files.FolderLock(root, LOCK_FILE, what="a reproduce run").acquire()


class Stages:
    """Runs named stages under ``root``, skipping those already done with the same key."""

    def __init__(self, root: str, force: bool = False, log: Callable[[str], None] = print):
        self.root = root
        self.force = force
        self.log = log
        self.keys: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []
        os.makedirs(root, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def recorded_seconds(self, name: str) -> float:
        """How long the stage took when it ran (from its ``stage.json``), 0.0 if unknown."""
        try:
            with open(os.path.join(self.path(name), STAGE_FILE), encoding="utf-8") as f:
                return float(json.load(f).get("seconds", 0.0))
        except (OSError, ValueError, TypeError, AttributeError):
            return 0.0

    def done(self, name: str, key: str) -> bool:
        try:
            with open(os.path.join(self.path(name), STAGE_FILE)) as f:
                return json.load(f).get("key") == key
        except (OSError, ValueError):
            return False

    def run(self, name: str, params: dict[str, Any], fn: Callable[[str], Any],
            upstream: list[str] = ()) -> str:
        """Runs ``fn(stage_dir)`` unless done; returns the stage's folder."""
        key = stage_key(name, params, [self.keys[u] for u in upstream])
        self.keys[name] = key
        out = self.path(name)
        if not self.force and self.done(name, key):
            self.log(f"[{name}] up to date, skipped")
            self.skipped.append(name)
            self.timings[name] = self.recorded_seconds(name)
            return out
        marker = os.path.join(out, STAGE_FILE)
        if os.path.exists(marker):
            os.remove(marker)  # inputs changed: the old outputs no longer count as done
        os.makedirs(out, exist_ok=True)
        self.log(f"[{name}] running")
        start = time.perf_counter()
        fn(out)
        self.timings[name] = time.perf_counter() - start
        files.atomic_write(marker, json.dumps(
            {"key": key, "params": params, "upstream": list(upstream),
             "seconds": round(self.timings[name], 2),
             "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2, default=str))
        self.log(f"[{name}] done in {self.timings[name]:.1f} s")
        return out

    def clear(self, name: str) -> None:
        """Removes a stage's outputs (used by --force on a single stage)."""
        shutil.rmtree(self.path(name), ignore_errors=True)
