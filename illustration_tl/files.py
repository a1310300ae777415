"""Finding image files in a user's folder tree."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

from illustration_tl.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".svg")


def find_images(root: str, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                flag: str = "--input") -> Iterator[str]:
    """Paths of image files under ``root``, recursively, in sorted order.

    Raises :class:`UserError` naming ``flag`` when ``root`` is not a folder.
    """
    if not os.path.isdir(root):
        raise UserError(f"{flag}={root!r} is not a folder; pass a folder of images")
    exts = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(exts):
                yield os.path.join(dirpath, f)
