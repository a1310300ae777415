"""``illustration-tl presets``: the named flag presets shipped with the package.

Use one with ``illustration-tl COMMAND --preset=NAME`` (flags after it override
it); ``--show=NAME`` prints its flags, ready to copy into a ``--flagfile``.
"""

from absl import flags

from illustration_tl.commands import app
from illustration_tl.core import presets

_SHOW = flags.DEFINE_string("show", None, "Print this preset's flags (with {package} "
                            "resolved) instead of the list.")


def main(argv) -> int:
    if _SHOW.value:
        print("\n".join(presets.flags(_SHOW.value)))
        return 0
    names = presets.names()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {presets.description(name)}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
