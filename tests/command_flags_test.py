"""Every command's flags: the same names, types, defaults and accepted values as the
snapshot (taken before the flags were generated from typed configs, issue 11), and one
help text per flag name across commands.

Each command module defines its flags at import time, so each is introspected in its
own process. Regenerate the snapshot (only for an intended change of the command line)
with ``python tests/command_flags_test.py --write``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "tests", "fixtures", "command_flags.json")

# Every command module, including the shared flag module two commands adopt.
MODULES = ("vocab", "map_names", "mapping_flags", "build", "select_classes", "stats",
           "baseline", "embed", "svm", "optimize", "report", "reproduce", "export", "fit",
           "predict", "evaluate", "presets")

_INTROSPECT = r'''
import importlib, json, sys
from absl import flags
module = importlib.import_module("illustration_tl.commands." + sys.argv[1])
out = {}
for f in flags.FLAGS.get_key_flags_for_module(module.__name__):
    default = f.default
    out[f.name] = {"type": f.flag_type(), "default": default,
                   "choices": list(getattr(f.parser, "enum_values", None) or []) or None,
                   "help": f.help}
print(json.dumps(out, sort_keys=True))
'''


def _introspect(module: str) -> dict:
    r = subprocess.run([sys.executable, "-c", _INTROSPECT, module], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _all_flags() -> dict[str, dict]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return dict(zip(MODULES, pool.map(_introspect, MODULES)))


def _without_help(found: dict[str, dict]) -> dict[str, dict]:
    return {m: {name: {k: v for k, v in flag.items() if k != "help"}
                for name, flag in flags.items()} for m, flags in found.items()}


@pytest.fixture(scope="module")
def command_flags() -> dict[str, dict]:
    return _all_flags()


def test_flag_names_types_defaults_and_choices_match_the_snapshot(command_flags):
    with open(SNAPSHOT, encoding="utf-8") as f:
        expected = json.load(f)
    assert set(command_flags) == set(expected)
    for module, flags in _without_help(command_flags).items():
        assert sorted(flags) == sorted(expected[module]), module
        for name, flag in flags.items():
            assert flag == expected[module][name], f"{module} --{name}"


def test_every_command_has_flags_and_helps(command_flags):
    for module, flags in command_flags.items():
        assert flags, module
        for name, flag in flags.items():
            assert flag["help"] and flag["help"].strip() == flag["help"], f"{module} --{name}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/command_flags_test.py --write")
    with open(SNAPSHOT, "w", encoding="utf-8") as f:
        json.dump(_without_help(_all_flags()), f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {SNAPSHOT}")
