"""Iconify icons as a noisy source (paper §4.1): collections read, icons named and mapped.

:mod:`illustration_tl.datasets.iconify` reads Iconify JSON collections; here the
selected collections' icons join a noisy build's plan as inline SVG bytes, each under
its icon name (``prefix:name``), when the name rule maps it to an ImageNet class.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import logging

from illustration_tl.core import files
from illustration_tl.datasets import iconify, name_mapping
from illustration_tl.datasets.illustrations import file_plan


def add_icons(plan: file_plan.Plan, manual_dir: str, paths: Sequence[str],
              selection: iconify.IconifyFilter, mapper: name_mapping.NameMapper) -> None:
    """Adds the mapped icons of the Iconify collections under ``paths`` to ``plan``."""
    for path in iconify.find_collections(paths, on_skip=plan.skip):
        rel = files.display_name(os.path.relpath(path, manual_dir).replace(os.sep, "/"))
        try:
            data = iconify.read_collection(path)
        except ValueError as e:
            plan.skipped.append((rel, str(e)))
            continue
        if data is None:
            logging.info("%s is not an Iconify collection; ignored", rel)
            continue
        reason = iconify.excluded_reason(data, selection)
        if reason:
            logging.info("Iconify %s: %s", rel, reason)
            continue
        for icon in iconify.icons(data, selection):
            plan.files_seen += 1
            if icon.name in plan.noisy:
                plan.skipped.append((icon.name, "duplicate icon name; first one kept"))
                continue
            matches = mapper.match(icon.name)
            if not matches:
                plan.unmapped += 1
                continue
            plan.noisy[icon.name] = matches
            plan.tasks.append((icon.name, icon.svg.encode("utf-8")))
