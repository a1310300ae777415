"""Output folders that never lose a user's files.

A command that writes a folder (``svm --output``, ``export --output``) goes
through two steps:

* :func:`prepare_output` checks the target before any work starts. A target
  that does not exist or is an empty folder is fine. A non-empty folder is
  refused unless ``overwrite`` is set *and* it is this command's own earlier
  output: it holds the command's manifest (:data:`MANIFEST`, written by
  :func:`writing`) and nothing that the manifest does not list. So
  ``--output=.``, a home folder, or an earlier output to which the user has
  added a file are refused even with ``--overwrite``; the current folder and
  its parents are always refused.
* :func:`writing` is a context manager that yields a new temporary sibling
  folder to write into. When the block finishes it writes the manifest, then
  swaps: the old output (if any) is renamed aside, the new folder renamed into
  place, and only then is the old one removed. If the block raises, the
  temporary folder is removed and the target is untouched.

Usage::

    from illustration_tl.core import outputs

    outputs.prepare_output(path, overwrite=flag, marker="export")  # fail fast
    ...                                                             # long work
    with outputs.writing(path, overwrite=flag, marker="export") as tmp:
        write_everything_into(tmp)

``marker`` names the command (``"svm"``, ``"export"``): an output is only ever
replaced by the command that wrote it. Refusals are :class:`UserError`
messages of one line naming the folder and the flag.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import uuid
from typing import Iterator

from illustration_tl.errors import UserError

MANIFEST = "illustration_tl_output.json"
"""The file that marks a folder as one command's output and lists what it wrote."""

MANIFEST_FORMAT = "illustration-tl output v1"

__all__ = ["MANIFEST", "OutputPlan", "prepare_output", "writing", "is_own_output",
           "write_manifest", "read_manifest"]


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """What :func:`prepare_output` found at the target.

    ``path``: the absolute target; ``replaces``: there is a folder to swap out
    (an empty folder or the command's own earlier output).
    """

    path: str
    replaces: bool


def _entries(directory: str) -> set[str]:
    """Relative paths of everything under ``directory`` (files, folders, links), without
    following symbolic links."""
    found: set[str] = set()
    for root, dirs, files in os.walk(directory, followlinks=False):
        rel = os.path.relpath(root, directory)
        for name in dirs + files:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def write_manifest(directory: str, marker: str) -> None:
    """Marks ``directory`` as ``marker``'s output, listing everything now in it."""
    entries = sorted(_entries(directory) - {MANIFEST})
    doc = {"format": MANIFEST_FORMAT, "written_by": marker, "entries": entries}
    with open(os.path.join(directory, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def read_manifest(directory: str) -> dict | None:
    """The manifest of ``directory``, or None if it has none (or an unreadable one)."""
    path = os.path.join(directory, MANIFEST)
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not (isinstance(doc, dict) and doc.get("format") == MANIFEST_FORMAT
            and isinstance(doc.get("entries"), list)):
        return None
    return doc


def _foreign(directory: str, marker: str) -> list[str] | None:
    """Entries of ``directory`` that ``marker`` did not write (None: not its output)."""
    doc = read_manifest(directory)
    if doc is None or doc.get("written_by") != marker:
        return None
    return sorted(_entries(directory) - {MANIFEST} - {str(e) for e in doc["entries"]})


def is_own_output(path: str, marker: str) -> bool:
    """True if ``path`` is a folder written by ``marker`` that holds nothing else."""
    return os.path.isdir(path) and not os.path.islink(path) and _foreign(path, marker) == []


def prepare_output(path: str, *, overwrite: bool, marker: str,
                   flag: str = "--output") -> OutputPlan:
    """Checks that ``path`` may be written by the command ``marker``.

    Fine: a missing path, an empty folder, or (with ``overwrite``) the
    command's own earlier output holding nothing else. Raises
    :class:`UserError` (one line naming ``flag``, the folder and
    ``--overwrite``) for anything else. Changes nothing on disk.
    """
    if not path:
        raise UserError(f"{flag} is required: the folder to write to")
    target = os.path.abspath(path)
    shown = f"{flag}={path}"
    if os.path.islink(target):
        raise UserError(f"{shown} is a symbolic link; give the folder itself")
    if os.path.exists(target) and not os.path.isdir(target):
        raise UserError(f"{shown} is a file, not a folder; choose a new folder")
    real = os.path.realpath(target)
    cwd = os.path.realpath(os.getcwd())
    if real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep) or real == os.sep:
        raise UserError(f"{shown} is the current folder or one of its parents; it is never "
                        "replaced, even with --overwrite: choose a new folder")
    if not os.path.exists(target):
        return OutputPlan(target, replaces=False)
    if not os.listdir(target):
        return OutputPlan(target, replaces=True)
    foreign = _foreign(target, marker)
    if foreign is None or foreign:
        what = (f"files `{marker}` did not write (e.g. {foreign[0]})" if foreign
                else f"files that are not an output of `{marker}`")
        raise UserError(f"{shown} is not empty and holds {what}; --overwrite only replaces "
                        f"an earlier `{marker}` output: choose a new or empty folder")
    if not overwrite:
        raise UserError(f"{shown} already holds an earlier `{marker}` output; pass "
                        "--overwrite to replace it")
    return OutputPlan(target, replaces=True)


def _sibling(target: str, kind: str) -> str:
    parent, name = os.path.split(target)
    return os.path.join(parent, f".{name}.{kind}-{uuid.uuid4().hex[:12]}")


@contextlib.contextmanager
def writing(path: str, *, overwrite: bool, marker: str, flag: str = "--output"
            ) -> Iterator[str]:
    """Yields a new temporary folder beside ``path``; on success swaps it in.

    Checks ``path`` with :func:`prepare_output` before and again right before
    the swap. Then: writes the manifest into the new folder, renames the old
    ``path`` (if any) aside, renames the new folder to ``path`` and removes the
    old one last. On an exception inside the block (or a refused swap) the
    temporary folder is removed and ``path`` is left as it was.
    """
    plan = prepare_output(path, overwrite=overwrite, marker=marker, flag=flag)
    os.makedirs(os.path.dirname(plan.path), exist_ok=True)
    tmp = _sibling(plan.path, "tmp")
    os.mkdir(tmp)  # honours the umask, unlike tempfile.mkdtemp (0700)
    try:
        yield tmp
        write_manifest(tmp, marker)
        plan = prepare_output(path, overwrite=overwrite, marker=marker, flag=flag)
        if plan.replaces:
            old = _sibling(plan.path, "old")
            os.rename(plan.path, old)
            try:
                os.rename(tmp, plan.path)
            except BaseException:
                os.rename(old, plan.path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, plan.path)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
