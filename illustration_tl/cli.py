"""``illustration-tl COMMAND [--flags]``: one console script for every stage.

Each command is an absl app in ``illustration_tl/commands/`` that also runs as
``python -m illustration_tl.commands.COMMAND``. Commands are imported only when run, so
listing them does not import TensorFlow.
"""

from __future__ import annotations

import difflib
import importlib
import sys

# name -> (module in illustration_tl.commands, one-line description). Pipeline order.
COMMANDS: dict[str, tuple[str, str]] = {
    "vocab": ("vocab", "Look up ImageNet-1k classes by name or wnid, offline."),
    "map-names": ("map_names",
                  "Map clip-art file names to ImageNet classes (paper §4.1)."),
    "build": ("build", "Build the illustrations TFDS dataset (curated or noisy) "
              "from a folder (paper §4)."),
    "select-classes": ("select_classes", "Rank a noisy set's classes (ImageNet rule, "
                       "probe, name ambiguity) and lay out the curated set (paper §4.2)."),
    "stats": ("stats", "Images per class and split of a built dataset (paper Table 1)."),
    "baseline": ("baseline", "Score an ImageNet classifier on a dataset of ImageNet "
                 "classes: 1000-way and restricted (paper §6, Table 2)."),
    "embed": ("embed", "Write a CNN layer's embeddings of dataset splits, in shards "
              "(paper §6.1)."),
    "svm": ("svm", "Train an SVM on embeddings (paper grid search) and score it on "
            "the test split (paper §6.1, §7.2)."),
    "optimize": ("optimize", "Fine-tune with re-initialized layers and per-layer "
                 "learning rates (paper §7)."),
    "report": ("report", "Tables 3-4, confusion matrices, t-SNE and prediction "
               "grids from evaluation results (paper §7)."),
    "reproduce": ("reproduce", "The paper's Table 3 end to end in one resumable "
                  "command."),
    "export": ("export", "Write CNN (+ SVM) as one SavedModel: image bytes in, "
               "top-k classes out."),
    "fit": ("fit", "The best classifier for a folder of images: dataset, features, "
            "search, test score, one SavedModel."),
    "extract": ("extract", "fit's feature extraction on Apache Beam (Dataflow, Spark, "
                "Flink; the tfds-cli extra), resumed by fit."),
    "predict": ("predict", "Classify image files with an exported model."),
    "evaluate": ("evaluate", "Score an exported model on a folder or manifest of images: "
                 "top-1/top-5 per class and per group (style, source; photographs, Fig. 7)."),
    "serve": ("serve", "Serve an export with TensorFlow Serving's REST API, and a page "
              "to drop an image on."),
    "presets": ("presets", "List the named flag presets "
                "(`COMMAND --preset=NAME`)."),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: illustration-tl COMMAND [--flags]   (`help COMMAND` for its flags)",
             "       illustration-tl --version", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def unknown_command(name: str) -> str:
    """The one-line error for a command that does not exist, with the closest one."""
    close = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.6)
    if close:
        return f"unknown command {name!r}; did you mean {close[0]!r}?"
    return f"unknown command {name!r}; the commands are {', '.join(COMMANDS)}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) >= 3 and argv[1] == "help":  # `help fit` is `fit --helpshort`
        argv = [argv[0], argv[2], "--helpshort"]
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        return 0 if len(argv) >= 2 else 1
    name = argv[1]
    if name in ("--version", "-V", "version"):
        from illustration_tl import __version__

        print(f"illustration-tl {__version__}")
        return 0
    if name not in COMMANDS:
        print(f"illustration-tl: error: {unknown_command(name)}", file=sys.stderr)
        return 2
    from absl import flags

    module = importlib.import_module(f"illustration_tl.commands.{COMMANDS[name][0]}")
    sys.argv = [f"illustration-tl {name}"] + argv[2:]
    # --helpshort lists the key flags of the module named by argv[0].
    sys.modules["__main__"].__doc__ = module.__doc__
    for flag in flags.FLAGS.get_key_flags_for_module(module.__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    module.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
