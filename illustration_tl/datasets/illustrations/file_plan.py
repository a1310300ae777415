"""A build's plan: which files to decode and what each one is (paper §4).

The sources (:mod:`.curated_folders`, :mod:`.noisy_names`, :mod:`.iconify_icons`) fill
one :class:`Plan`; the builder decodes its ``tasks`` and turns the results into
examples. Files left out before decoding go to ``skipped`` with their reason, never
dropped silently.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

from illustration_tl.core import files
from illustration_tl.datasets import name_mapping
from illustration_tl.errors import UserError


@dataclasses.dataclass
class Plan:
    """The files of one build, before decoding."""

    layout: str
    tasks: list[tuple[str, str | bytes]] = dataclasses.field(default_factory=list)
    # curated: file name -> (class folder, folder split); noisy: file name -> matches
    curated: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    noisy: dict[str, list[name_mapping.ClassMatch]] = dataclasses.field(default_factory=dict)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    files_seen: int = 0
    unmapped: int = 0
    dropped_classes: int = 0

    def skip(self, entry: files.Skipped) -> None:
        """Lists a file or folder that :func:`illustration_tl.core.files.walk` left out."""
        self.skipped.append((files.display_name(entry.rel), entry.reason))


def walk(root: str, plan: Plan) -> Iterator[tuple[str, str]]:
    """``(name, path)`` of the non-hidden regular files under ``root``, sorted.

    ``name`` is the relative path ('/'-separated) as printable text: bytes that
    are not UTF-8 come out backslash-escaped (``caf\\xe9.png``), and that is
    how the file is named in ``file_name`` and ``skipped.tsv``; ``path`` opens
    it. Symlinks are followed only inside ``root``; links leading out, folder
    cycles, unreadable folders, FIFOs, devices, and hidden files and folders (a
    class folder ``..x``, ``.DS_Store``) are listed in ``plan.skipped`` (see
    :func:`illustration_tl.core.files.walk`), never dropped silently.
    """
    seen: set[str] = set()
    for rel in files.walk(root, report_hidden=True, on_skip=plan.skip):
        name = files.display_name(rel)
        if name in seen:  # a real name that looks like another's escaped form
            plan.skipped.append((name, "file name collides with another once escaped"))
            continue
        seen.add(name)
        yield name, os.path.join(root, *rel.split("/"))


def check_not_empty(manual_dir: str, flag: str) -> None:
    """Refuses a folder with no (non-hidden, regular) file in it, in one line."""
    why: list[str] = []
    for _ in files.walk(manual_dir, on_skip=lambda s: why.append(s.reason)):
        return
    detail = f" ({why[0]})" if why else ""
    raise UserError(f"{flag}={manual_dir!r} holds no image files{detail}; point it at "
                    "your images (curated: one folder per class)")
