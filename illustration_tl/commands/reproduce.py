"""``illustration-tl reproduce --preset=demo``: the paper's Table 3.

Runs the four models of Table 3 end to end (paper §6-§7) into one folder:
datasets, Baseline CNN, Baseline CNN + SVM, the adaptive layer-based
optimization on the noisy set, Optimized CNN, Optimized CNN + SVM, the report
and the export of the best model, then writes ``summary.md`` beside the
paper's numbers. Every stage is skipped when its outputs exist and match its
inputs, so an interrupted run resumes; ``--force`` reruns everything.

Its flags are generated from :class:`reproduce_config.ReproduceConfig` and from the
training fields of :class:`training.config.TrainConfig` (the recipe flags ``optimize``
has, so ``--preset=paper_vgg19`` serves both); every flag has an effect.
``--weights=auto`` uses ImageNet weights when a file, the Keras cache or a
download provides them and random initialization otherwise.
"""

import dataclasses

from absl import flags

from illustration_tl.commands import app, mapping_flags
from illustration_tl.core import config_flags
from illustration_tl.pipelines.reproduce_config import ReproduceConfig
from illustration_tl.training.config import TrainConfig

flags.adopt_module_key_flags(mapping_flags)

OWN_FLAGS = config_flags.define(ReproduceConfig)
# The training recipe: TrainConfig's fields, except those reproduce sets for every stage.
TRAIN_FLAGS = config_flags.define(TrainConfig, exclude=[
    f for f in config_flags.fields(TrainConfig) if f in OWN_FLAGS or f == "dataset"])
_MAX_SIDE = flags.DEFINE_integer("max_side", 512, "Dataset images are stored with the longer "
                                 "side at most this many pixels.")
_MIN_IMAGES = flags.DEFINE_integer("min_images_per_class", 10, "Noisy classes with fewer "
                                   "images are dropped.")


def config() -> ReproduceConfig:
    """The :class:`reproduce_config.ReproduceConfig` the flags describe."""
    from illustration_tl.errors import UserError

    own = config_flags.values(OWN_FLAGS, ReproduceConfig)
    if not own["output_dir"]:
        raise UserError("--output_dir is required: the folder for every stage's outputs")
    if not own["curated_dir"]:
        raise UserError("--curated_dir is required (with --noisy_dir for the paper's "
                        "optimization; see `illustration-tl presets --show=demo`)")
    mapping = mapping_flags.options()
    noisy = {"max_side": _MAX_SIDE.value, "min_images_per_class": _MIN_IMAGES.value,
             "min_token_length": mapping.min_token_length,
             "fold_plurals": mapping.fold_plurals, "phrase_mode": mapping.phrase_mode,
             "ignore": tuple(mapping_flags.IGNORE.value),
             "ignore_words": tuple(mapping_flags.IGNORE_WORDS.value)}
    cfg = ReproduceConfig(**own, curated_options={"max_side": _MAX_SIDE.value},
                          noisy_options=noisy,
                          train_overrides=config_flags.values(TRAIN_FLAGS, TrainConfig))
    return dataclasses.replace(cfg, svm_scalings=tuple(cfg.svm_scalings))


def main(argv) -> int:
    from illustration_tl.pipelines import reproduce

    reproduce.reproduce(config())
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
