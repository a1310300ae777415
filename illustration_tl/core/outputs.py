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
from typing import Iterator, Mapping, Sequence

from illustration_tl.core import files
from illustration_tl.errors import UserError

MANIFEST = "illustration_tl_output.json"
"""The file that marks a folder as one command's output and lists what it wrote."""

MANIFEST_FORMAT = "illustration-tl output v1"

__all__ = ["MANIFEST", "OutputPlan", "prepare_output", "writing", "is_own_output",
           "write_manifest", "read_manifest", "claim", "record", "check_apart"]


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
    for root, dirs, names in os.walk(directory, followlinks=False):
        rel = os.path.relpath(root, directory)
        for name in dirs + names:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def write_manifest(directory: str, marker: str, pending: Sequence[str] = ()) -> None:
    """Marks ``directory`` as ``marker``'s output, listing everything now in it.

    ``pending``: entries (relative paths) being written now, whose whole subtree is
    the command's even if a kill stops the run before the manifest lists it.
    """
    entries = sorted(_entries(directory) - {MANIFEST})
    doc = {"format": MANIFEST_FORMAT, "written_by": marker, "entries": entries,
           "pending": sorted(pending)}
    files.atomic_write(os.path.join(directory, MANIFEST), json.dumps(doc, indent=1) + "\n")


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
    pending = [str(p) for p in doc.get("pending") or [] if isinstance(p, str)]

    def ours(entry: str) -> bool:
        return any(entry == p or entry.startswith(p.rstrip("/") + "/") for p in pending)

    return sorted(e for e in _entries(directory) - {MANIFEST} - {str(e) for e in doc["entries"]}
                  if not ours(e))


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
    target, shown = _check_target(path, flag)
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


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


def _check_target(path: str, flag: str) -> tuple[str, str]:
    """(absolute target, ``flag=path``) after the checks every output folder gets: given,
    not a link or a file, not the current folder or one of its parents, and its
    nearest existing parent a folder (``--output=file/sub``). One-line refusals."""
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
    if _inside(cwd, real) or real == os.sep:
        raise UserError(f"{shown} is the current folder or one of its parents; it is never "
                        "replaced, even with --overwrite: choose a new folder")
    parent = target
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{shown}: {parent} is a file, not a folder; choose a folder path")
    return target, shown


def check_apart(output: str, inputs: Mapping[str, str], flag: str = "--output") -> None:
    """Refuses an output folder inside an input folder (the run would read its own
    outputs as input) and an input inside the output; ``inputs``: flag -> path."""
    out = os.path.realpath(os.path.abspath(output))
    for in_flag, path in inputs.items():
        if not path:
            continue
        real = os.path.realpath(path)
        if _inside(out, real):
            raise UserError(f"{flag}={output} is inside {in_flag}={path}: the run would read "
                            "its own outputs as input; choose an output folder elsewhere")
        if _inside(real, out):
            raise UserError(f"{in_flag}={path} is inside {flag}={output}: move the input out "
                            "of the output folder or choose another output folder")


def claim(path: str, *, marker: str, flag: str = "--output",
          inputs: Mapping[str, str] | None = None, create: bool = True) -> str:
    """Makes ``path`` the resumable output folder of the command ``marker``; returns it.

    For commands that write a folder stage by stage and resume (``fit``,
    ``reproduce``): the target must be new, empty, or an earlier output of ``marker``
    (its manifest, and nothing it does not list or hold as pending). A folder that
    merely holds files with the right names (a stray ``fit.json``) is foreign and
    refused. Creates the folder and writes the manifest (unless ``create`` is False:
    checks only); one-line :class:`UserError` naming ``flag`` for anything else.
    """
    target, shown = _check_target(path, flag)
    check_apart(path, inputs or {}, flag)
    if os.path.isdir(target) and os.listdir(target):
        foreign = _foreign(target, marker)
        if foreign is None:
            raise UserError(f"{shown} is not empty and is not an earlier `{marker}` output "
                            f"(it has no {MANIFEST} written by `{marker}`); choose a new or "
                            "empty folder")
        if foreign:
            raise UserError(f"{shown} holds files `{marker}` did not write (e.g. "
                            f"{foreign[0]}); move them out or choose a new folder")
        return target
    if not create:
        return target
    try:
        os.makedirs(target, exist_ok=True)
        write_manifest(target, marker)
    except OSError as e:
        raise UserError(f"{shown}: cannot create the folder ({e.strerror or e}); choose a "
                        "folder you can write") from None
    return target


def record(path: str, marker: str, pending: Sequence[str] = ()) -> None:
    """Rewrites the manifest of a folder :func:`claim` made, listing what it now holds."""
    write_manifest(path, marker, pending)


def pending(path: str) -> list[str]:
    """The entries the manifest of ``path`` holds as being written (see :func:`record`)."""
    doc = read_manifest(path) or {}
    return [p for p in doc.get("pending") or [] if isinstance(p, str)]


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
