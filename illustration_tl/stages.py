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

STAGE_FILE = "stage.json"


def stage_key(name: str, params: dict[str, Any], upstream: list[str] = ()) -> str:
    """A stable hash of a stage's name, parameters and upstream keys."""
    doc = json.dumps({"name": name, "params": params, "upstream": list(upstream)},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def tree_fingerprint(root: str) -> str:
    """A hash of every file's relative path, size and mtime under ``root``: cheap, and
    it changes when a user adds, removes or edits an image."""
    h = hashlib.sha256()
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            st = os.stat(p)
            h.update(f"{os.path.relpath(p, root)}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:16]


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
            self.timings[name] = 0.0
            return out
        marker = os.path.join(out, STAGE_FILE)
        if os.path.exists(marker):
            os.remove(marker)  # inputs changed: the old outputs no longer count as done
        os.makedirs(out, exist_ok=True)
        self.log(f"[{name}] running")
        start = time.perf_counter()
        fn(out)
        self.timings[name] = time.perf_counter() - start
        tmp = marker + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"key": key, "params": params, "upstream": list(upstream),
                       "seconds": round(self.timings[name], 2),
                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, f, indent=2,
                      default=str)
        os.replace(tmp, marker)
        self.log(f"[{name}] done in {self.timings[name]:.1f} s")
        return out

    def clear(self, name: str) -> None:
        """Removes a stage's outputs (used by --force on a single stage)."""
        shutil.rmtree(self.path(name), ignore_errors=True)
