"""``illustration-tl build --config=curated --manual_dir=DIR`` (paper §4).

Builds the `illustrations` TFDS dataset from a folder of images: the
``curated`` config (one folder per class, authors' train/ + val/ layout or
flat) or the ``noisy`` one (file names mapped to ImageNet classes, plus
Iconify JSON collections). A thin wrapper around ``tfds build
--imports=illustration_tl.datasets.illustrations illustrations``; load the
result with ``tfds.load("illustrations/<name>", data_dir=...)`` or
``--dataset=illustrations/<name>`` in the other commands. Unset options keep the
paper's preset; changed ones need ``--name``.
"""

from absl import flags

from illustration_tl.commands import app, mapping_flags
from illustration_tl.core import config_flags
from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib
from illustration_tl.datasets.illustrations.illustrations_dataset_builder import BuildConfig
from illustration_tl.errors import UserError

# One flag per field of BuildConfig (names, defaults and help live there), and the
# name-mapping flags map-names has too.
FLAGS = config_flags.define(BuildConfig)
flags.adopt_module_key_flags(mapping_flags)

# Dataset options: BuildConfig fields that are IllustrationsConfig fields (None: the
# preset's), in the order the options reach builder_lib.build.
_OPTIONS = ("max_side", "max_pixels", "svg_size", "validation_fraction", "split_seed",
            "min_images_per_class", "scan_json", "iconify_hidden", "iconify_aliases",
            "iconify_size")
_ICONIFY_LISTS = ("iconify", "iconify_include_sets", "iconify_exclude_sets",
                  "iconify_exclude_categories", "iconify_exclude_licenses")


def config() -> BuildConfig:
    """The :class:`BuildConfig` the flags describe."""
    return BuildConfig(**config_flags.values(FLAGS, BuildConfig))


def _background(text: str | None):
    if text is None:
        return None, False
    if text.lower() == "none":
        return None, True
    try:
        rgb = tuple(int(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise UserError(f"--background={text!r}: give R,G,B in 0..255 (e.g. 255,255,255) "
                        "or none")
    return rgb, True


def options(cfg: BuildConfig | None = None) -> dict:
    """The dataset options the flags set (unset flags keep the preset)."""
    cfg = cfg or config()
    mapping = mapping_flags.options()  # validates --ignore
    out = {key: getattr(cfg, key) for key in _OPTIONS}
    out.update({
        "min_token_length": mapping.min_token_length, "fold_plurals": mapping.fold_plurals,
        "phrase_mode": mapping.phrase_mode,
        "ignore": tuple(mapping_flags.IGNORE.value),
        "ignore_words": tuple(mapping_flags.IGNORE_WORDS.value),
    })
    out.update({key: getattr(cfg, key) for key in _ICONIFY_LISTS})
    if cfg.split_fractions is not None:
        try:
            out["split_fractions"] = tuple(float(v) for v in cfg.split_fractions)
        except ValueError:
            raise UserError(f"--split_fractions={list(cfg.split_fractions)}: three "
                            "numbers") from None
    out = {k: v for k, v in out.items() if v is not None}
    background, given = _background(cfg.background)
    if given:
        out["background"] = background
    return out


def main(argv) -> int:
    cfg = config()
    if not cfg.config:
        raise UserError("--config is required: curated or noisy")
    if not cfg.manual_dir:
        raise UserError("--manual_dir is required: the folder with your images")
    opts = options(cfg)
    try:
        builder = builder_lib.build(cfg.config, cfg.manual_dir, cfg.data_dir, name=cfg.name,
                                    overwrite=cfg.overwrite, num_workers=cfg.num_workers,
                                    beam_options=cfg.beam_options,
                                    shuffle_memory_mb=cfg.shuffle_memory_mb, **opts)
    except ValueError as e:  # bad option values, empty splits, no usable images
        raise UserError(str(e).splitlines()[0]) from None
    info = builder.info
    splits = ", ".join(f"{s} {info.splits[s].num_examples}" for s in sorted(info.splits))
    md = info.metadata or {}
    print(f"illustrations/{builder.builder_config.name}: {info.features['label'].num_classes} "
          f"classes; examples: {splits}")
    if "files_skipped" in md:
        dups = md.get("duplicates", {})
        print(f"files decoded {md.get('files_decoded')}, skipped {md['files_skipped']} "
              f"(see {builder.data_dir}/{builder_lib.SKIPPED_FILE}); duplicates: "
              f"{dups.get('byte_identical_duplicates', 0)} byte-identical, "
              f"{dups.get('pixel_identical_duplicates', 0)} pixel-identical")
    print(f"data: {builder.data_dir}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
