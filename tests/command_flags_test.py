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
           "extract", "predict", "evaluate", "serve", "presets")

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


ALL = "*"
# Flags whose help text differs in some commands, and why: flag name -> (the commands
# with their own text, or ALL, reason). In every other command a flag name has one help
# text (the shared settings of common_settings).
OWN_TEXT = {
    # The same name for different things.
    "output": (ALL, "each command writes something else (embeddings, an SVM, a CSV, ...)"),
    "overwrite": (ALL, "what may be replaced, and how, differs per command"),
    "seed": (ALL, "each stage seeds something else (weights, CV folds, t-SNE, training)"),
    "top_k": (("predict",), "classes an export returns vs classes predict prints"),
    "images": (ALL, "predict: files, folders or globs; fit: class folders; evaluate: "
                    "class or group folders, or a manifest's root"),
    "embeddings": (("report",), "report: split folders to map with t-SNE"),
    "name": (("build",), "build: a TFDS config name; elsewhere a model name in reports"),
    "backbone": (("fit", "extract"), "fit (and extract, which takes fit's flags) also "
                                     "takes KerasHub vision towers (keras_hub:<preset>)"),
    "num_classes": (ALL, "select_classes: classes to select; optimize: for --dry_run"),
    "n_jobs": (ALL, "svm: grid-search processes (-1: all cores); fit: search threads"),
    "output_dir": (ALL, "optimize: one training run; reproduce: every stage's outputs"),
    "max_side": (ALL, "build, reproduce: the stored image side; predict (default: the "
                      "export's record) and evaluate: match it"),
    "min_images_per_class": (ALL, "build: unset keeps the preset's value; reproduce: a "
                                  "number"),
    "split": (("report",), "report: unset = the split the results were scored on"),
    "dataset": (("optimize", "report"), "optimize: the training set; report: unset = the "
                                         "dataset the results were scored on"),
    # Training (train.TrainConfig, train.TrainDataConfig, reproduce.ReproduceConfig).
    "batch_size": (("optimize", "reproduce"), "training's global batch, not a forward pass"),
    "weights": (("optimize", "reproduce"), "optimize takes files with or without the top; "
                                           "reproduce adds 'auto'"),
    "image_size": (("optimize", "reproduce"), "a fixed size (224), not the backbone's"),
    "resize_mode": (("reproduce",), "reproduce: one mode for every stage, training included"),
    "augment": (ALL, "optimize states the crop size; reproduce passes it on to optimize"),
    "max_pixels": (("fit", "extract"), "build: unset keeps the preset's value; fit (and "
                                       "extract): a number, and skipped.tsv names what it "
                                       "skipped"),
    "beam_options": (("extract",), "build: TFDS's Beam mode writes the examples; extract: "
                                   "the Beam pipeline embeds the images"),
    "dry_run": (("fit",), "optimize: the layers and their origin; fit: the stages' plan and "
                          "their time on this machine"),
}
# Commands whose flag still has its own text because the command's flags are not yet
# generated from a typed config with the shared settings (issue 11): name -> commands.
PENDING: dict[str, tuple[str, ...]] = {}


def help_text_problems(command_flags: dict[str, dict]) -> list[str]:
    """Flag names with several help texts that OWN_TEXT does not explain, and entries of
    OWN_TEXT that no longer apply."""
    helps: dict[str, dict[str, str]] = {}  # flag name -> module -> help
    for module, flags in command_flags.items():
        for name, flag in flags.items():
            helps.setdefault(name, {})[module] = flag["help"]
    problems = [f"--{name} is not a flag" for name in {**OWN_TEXT, **PENDING}
                if name not in helps]
    for name, by_module in sorted(helps.items()):
        own, reason = OWN_TEXT.get(name, ((), ""))
        if name in PENDING:
            own = ALL if own == ALL else tuple(own) + PENDING[name]
            reason = reason or "not yet generated from a typed config"
        shared = {m: h for m, h in by_module.items() if own != ALL and m not in own}
        if len(set(shared.values())) > 1:
            problems.append(f"--{name} has several help texts: {shared}")
        if name not in OWN_TEXT and name not in PENDING:
            continue
        if len(set(by_module.values())) == 1:
            problems.append(f"--{name} no longer differs ({reason})")
        for m in () if own == ALL else own:
            if m not in by_module or by_module[m] in shared.values():
                problems.append(f"{m} --{name} has no own text ({reason})")
    return problems


def test_one_help_text_per_flag_name_across_commands(command_flags):
    assert help_text_problems(command_flags) == []


def test_help_text_check_finds_a_second_text():
    flags = {"a": {"x": {"help": "One."}}, "b": {"x": {"help": "Two."}}}
    assert help_text_problems(flags) == [
        f"--{n} is not a flag" for n in {**OWN_TEXT, **PENDING}] + ["--x has several help texts: "
                                                     "{'a': 'One.', 'b': 'Two.'}"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/command_flags_test.py --write")
    with open(SNAPSHOT, "w", encoding="utf-8") as f:
        json.dump(_without_help(_all_flags()), f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {SNAPSHOT}")
