"""Iconify JSON icon collections as a source of named illustrations (paper §4.1).

The paper's noisy set is clip art whose *file name* says what it shows. The
npm package ``@iconify/json`` holds about 380,000 named open-source icons in
some 240 sets, one JSON file per set (``json/<prefix>.json``), each icon an
SVG body with its set's license. Read as a noisy source, every icon is an
image named ``<prefix>/<icon>`` (``game-icons/pelican``) that the §4.1 name
rule can label; the builder rasterizes the SVG at build time.

Format (https://iconify.design/docs/types/iconify-json.html): a collection is
``{"prefix", "info": {"name", "license": {"title", "spdx"}, "category"},
"icons": {name: {"body", "width"?, "height"?, "left"?, "top"?, "rotate"?,
"hFlip"?, "vFlip"?, "hidden"?}}, "aliases": {name: {"parent", ...}},
"width"?, "height"?, "left"?, "top"?}``; sizes default to 16.

Sets can be selected by prefix, by category (``logos``, ``flags``,
``programming`` ... matched case-insensitively as substrings of the set's
category) and by license (SPDX ids, or ``non-commercial`` for any -NC
license). Only the standard library is used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable, Iterator, Mapping, Sequence

from illustration_tl.core import files

_DEFAULT_SIZE = 16
_NC = re.compile(r"(^|[-_ ])nc([-_ ]|$)|non-?commercial", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class IconifyFilter:
    """Which sets and icons of Iconify collections to read. Defaults: all visible icons."""

    include_sets: tuple[str, ...] = ()        # set prefixes; empty = every set
    exclude_sets: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()  # substrings of info.category, case-insensitive
    exclude_licenses: tuple[str, ...] = ()    # SPDX ids, or "non-commercial"
    include_hidden: bool = False              # icons flagged hidden (deprecated names)
    include_aliases: bool = False             # alias names (same drawing, another name)


@dataclasses.dataclass(frozen=True)
class Icon:
    """One icon, ready to rasterize: ``name`` is ``<prefix>/<icon>``."""

    name: str
    svg: str
    license: str


def read_collection(path: str) -> dict[str, Any] | None:
    """The parsed collection in ``path``, or None if the JSON is not an Iconify collection.

    Raises ValueError (with the reason) for unreadable or malformed JSON.
    """
    try:
        data = json.loads(files.read_regular_file(path).decode("utf-8"))
    except files.UnreadableFile as e:
        raise ValueError(str(e)) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"unreadable JSON: {type(e).__name__}: {str(e)[:200]}") from None
    return data if is_collection(data) else None


def is_collection(data: Any) -> bool:
    """True for an Iconify icon set (``prefix`` plus an ``icons`` object)."""
    return (isinstance(data, dict) and isinstance(data.get("prefix"), str)
            and isinstance(data.get("icons"), dict))


def license_of(data: Mapping[str, Any]) -> str:
    """The set's license as SPDX id (or title), ``unknown`` if not stated."""
    lic = (data.get("info") or {}).get("license") or {}
    return str(lic.get("spdx") or lic.get("title") or "unknown")


def is_non_commercial(data: Mapping[str, Any]) -> bool:
    """True when the set's license forbids commercial use (CC BY-NC and the like)."""
    lic = (data.get("info") or {}).get("license") or {}
    return any(_NC.search(str(lic.get(k) or "")) for k in ("spdx", "title"))


def excluded_reason(data: Mapping[str, Any], selection: IconifyFilter) -> str | None:
    """Why a whole set is left out under ``selection``, or None if it is read."""
    prefix = data["prefix"]
    if selection.include_sets and prefix not in selection.include_sets:
        return f"set {prefix!r} not in include_sets"
    if prefix in selection.exclude_sets:
        return f"set {prefix!r} in exclude_sets"
    category = str((data.get("info") or {}).get("category") or "")
    for c in selection.exclude_categories:
        if c and c.lower() in category.lower():
            return f"category {category!r} excluded ({c})"
    spdx = license_of(data)
    for lic in selection.exclude_licenses:
        if lic.lower() in ("non-commercial", "noncommercial", "nc"):
            if is_non_commercial(data):
                return f"non-commercial license {spdx!r} excluded"
        elif lic.lower() == spdx.lower():
            return f"license {spdx!r} excluded"
    return None


def icons(data: Mapping[str, Any], selection: IconifyFilter = IconifyFilter()
          ) -> Iterator[Icon]:
    """The icons of one collection as standalone SVG documents, in name order."""
    if excluded_reason(data, selection):
        return
    prefix, lic = data["prefix"], license_of(data)
    table: Mapping[str, Any] = data["icons"]
    for name in sorted(table):
        icon = table[name]
        if not isinstance(icon, dict) or not isinstance(icon.get("body"), str):
            continue
        if icon.get("hidden") and not selection.include_hidden:
            continue
        yield Icon(f"{prefix}/{name}", icon_svg(icon, data), lic)
    if selection.include_aliases:
        for name in sorted(data.get("aliases") or {}):
            resolved = resolve_alias(name, data)
            if resolved is not None and not (resolved.get("hidden")
                                             and not selection.include_hidden):
                yield Icon(f"{prefix}/{name}", icon_svg(resolved, data), lic)


def resolve_alias(name: str, data: Mapping[str, Any], depth: int = 0) -> dict | None:
    """The icon an alias stands for, with the alias's transformations merged in."""
    aliases = data.get("aliases") or {}
    alias = aliases.get(name)
    if not isinstance(alias, dict) or depth > 8:
        return None
    parent = alias.get("parent")
    if parent in data["icons"]:
        base = dict(data["icons"][parent])
    elif parent in aliases:
        base = resolve_alias(parent, data, depth + 1)
        if base is None:
            return None
    else:
        return None
    merged = {**base, **{k: v for k, v in alias.items() if k not in
                         ("parent", "rotate", "hFlip", "vFlip")}}
    merged["rotate"] = (int(base.get("rotate", 0)) + int(alias.get("rotate", 0))) % 4
    merged["hFlip"] = bool(base.get("hFlip")) != bool(alias.get("hFlip"))
    merged["vFlip"] = bool(base.get("vFlip")) != bool(alias.get("vFlip"))
    return merged


def icon_svg(icon: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """A standalone SVG document for one icon, transformations applied."""

    def get(key: str, fallback: float) -> float:
        return float(icon.get(key, defaults.get(key, fallback)))

    left, top = get("left", 0), get("top", 0)
    width, height = get("width", _DEFAULT_SIZE), get("height", _DEFAULT_SIZE)
    body = icon["body"]
    transforms = []
    if icon.get("hFlip"):
        transforms.append(f"translate({2 * left + width:g} 0) scale(-1 1)")
    if icon.get("vFlip"):
        transforms.append(f"translate(0 {2 * top + height:g}) scale(1 -1)")
    rotate = int(icon.get("rotate", 0)) % 4
    if rotate:
        cx, cy = left + width / 2, top + height / 2
        transforms.insert(0, f"rotate({90 * rotate} {cx:g} {cy:g})")
        if rotate % 2:
            left, top, width, height = cx - height / 2, cy - width / 2, height, width
    if transforms:
        body = f'<g transform="{" ".join(transforms)}">{body}</g>'
    return ('<svg xmlns="http://www.w3.org/2000/svg" '
            'xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'viewBox="{left:g} {top:g} {width:g} {height:g}" '
            f'width="{width:g}" height="{height:g}" color="#000">{body}</svg>')


def find_collections(paths: Sequence[str],
                     on_skip: Callable[[files.Skipped], None] | None = None) -> list[str]:
    """``*.json`` files named by ``paths`` (files, or folders searched recursively with
    :func:`illustration_tl.core.files.walk`, which reports what it leaves out to
    ``on_skip``), sorted."""
    found = []
    for p in paths:
        if os.path.isdir(p):
            found += [os.path.join(p, *rel.split("/")) for rel in files.walk(p, on_skip=on_skip)
                      if rel.lower().endswith(".json")]
        elif p.lower().endswith(".json"):
            found.append(p)
    return sorted(set(found))
