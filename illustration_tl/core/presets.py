"""Named flag presets shipped inside the package (``illustration-tl COMMAND --preset=NAME``).

A preset is an absl flagfile in ``illustration_tl/presets/NAME.flags``. Its first
comment line is its one-line description (``illustration-tl presets`` lists them).
``{package}`` in a preset stands for the installed package folder, so the demo's
``--curated_dir={package}/demo/curated`` works from any working folder and from a
wheel. ``--preset=NAME`` is replaced by the preset's flags where it stands: flags
after it override the preset's, as with ``--flagfile``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from illustration_tl.errors import UserError

PACKAGE_DIR = Path(str(resources.files("illustration_tl")))
PRESETS_DIR = PACKAGE_DIR / "presets"


def names() -> list[str]:
    """The shipped presets, sorted by name."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.flags"))


def path(name: str) -> Path:
    """The flagfile of preset ``name``; one-line :class:`UserError` if there is none."""
    file = PRESETS_DIR / f"{name}.flags"
    if not name or "/" in name or not file.is_file():
        raise UserError(f"--preset={name}: no such preset; choose one of {', '.join(names())} "
                        "(`illustration-tl presets` describes them)")
    return file


def description(name: str) -> str:
    """The first comment line of the preset, without its ``#``."""
    for line in path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def flags(name: str) -> list[str]:
    """The preset's flags, one ``--flag=value`` per element, ``{package}`` resolved."""
    out = []
    for line in path(name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line.replace("{package}", str(PACKAGE_DIR)))
    return out


def expand(argv: list[str]) -> list[str]:
    """``argv`` with each ``--preset=NAME`` (or ``--preset NAME``) replaced by its flags."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--preset", "-preset"):
            if i + 1 >= len(argv):
                raise UserError("--preset needs a name, e.g. --preset=demo")
            out += flags(argv[i + 1])
            i += 2
            continue
        if arg.startswith(("--preset=", "-preset=")):
            out += flags(arg.split("=", 1)[1])
        else:
            out.append(arg)
        i += 1
    return out
