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
from illustration_tl.datasets.illustrations import illustrations_dataset_builder as builder_lib
from illustration_tl.errors import UserError

_CONFIG = flags.DEFINE_enum("config", None, list(builder_lib.PRESETS),
                            "Preset: curated (§4.2 class folders) or noisy (§4.1 name rule).")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder with your images.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder (default "
                                "~/tensorflow_datasets or $TFDS_DATA_DIR).")
_NAME = flags.DEFINE_string("name", None, "Config name for a dataset with non-preset options "
                            "(TFDS stores each config under its name).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild even if the dataset exists.")
_MAX_SIDE = flags.DEFINE_integer("max_side", None, "Downscale so the longer side is at most "
                                 "this many pixels (preset 512).")
_BACKGROUND = flags.DEFINE_string("background", None, "R,G,B colour under transparent pixels "
                                  "(preset 255,255,255), or 'none' to drop alpha.")
_MAX_PIXELS = flags.DEFINE_integer("max_pixels", None, "Skip images declaring more pixels "
                                   "(decompression-bomb guard; preset 89478485).")
_SVG_SIZE = flags.DEFINE_integer("svg_size", None, "Longer side of rasterized SVGs (preset 512).")
_SPLIT_FRACTIONS = flags.DEFINE_list("split_fractions", None, "train,validation,test fractions "
                                     "(preset 0.64,0.16,0.2).")
_VALIDATION_FRACTION = flags.DEFINE_float("validation_fraction", None, "Share of train/ used "
                                          "as validation in the authors' layout (preset 0.2).")
_SPLIT_SEED = flags.DEFINE_integer("split_seed", None, "Seed of the content-hash split (preset 0).")
_MIN_IMAGES = flags.DEFINE_integer("min_images_per_class", None, "noisy: keep classes with at "
                                   "least this many images (preset 10).")
flags.adopt_module_key_flags(mapping_flags)
_ICONIFY = flags.DEFINE_list("iconify", None, "noisy: Iconify JSON files or folders to read "
                             "besides the manual dir.")
_SCAN_JSON = flags.DEFINE_bool("scan_json", None, "noisy: read Iconify collections among the "
                               "*.json files in the manual dir (preset true).")
_INCLUDE_SETS = flags.DEFINE_list("iconify_include_sets", None, "Only these Iconify set prefixes.")
_EXCLUDE_SETS = flags.DEFINE_list("iconify_exclude_sets", None, "Leave out these Iconify sets.")
_EXCLUDE_CATEGORIES = flags.DEFINE_list(
    "iconify_exclude_categories", None, "Leave out Iconify sets whose category contains any "
    "of these words (e.g. logos,flags,programming).")
_EXCLUDE_LICENSES = flags.DEFINE_list(
    "iconify_exclude_licenses", None, "Leave out Iconify sets with these SPDX licenses, or "
    "'non-commercial' for every -NC license.")
_ICONIFY_HIDDEN = flags.DEFINE_bool("iconify_hidden", None, "Include hidden (deprecated) icons.")
_ICONIFY_ALIASES = flags.DEFINE_bool("iconify_aliases", None, "Include alias names of icons.")
_ICONIFY_SIZE = flags.DEFINE_integer("iconify_size", None, "Longer side of rendered Iconify "
                                     "icons (preset 256).")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", None, "Decoding processes (0 = one per CPU).")
_BEAM_OPTIONS = flags.DEFINE_list(
    "beam_options", None, "Write the examples with Apache Beam (TFDS Beam mode; the tfds-cli "
    "extra): Beam pipeline flags, e.g. --beam_options=--runner=DirectRunner or Dataflow/"
    "Spark/Flink options. Files are still decoded by this process first.")


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


def options() -> dict:
    """The dataset options the flags set (unset flags keep the preset)."""
    mapping = mapping_flags.options()  # validates --ignore
    out = {
        "max_side": _MAX_SIDE.value, "max_pixels": _MAX_PIXELS.value,
        "svg_size": _SVG_SIZE.value, "validation_fraction": _VALIDATION_FRACTION.value,
        "split_seed": _SPLIT_SEED.value, "min_images_per_class": _MIN_IMAGES.value,
        "scan_json": _SCAN_JSON.value, "iconify_hidden": _ICONIFY_HIDDEN.value,
        "iconify_aliases": _ICONIFY_ALIASES.value, "iconify_size": _ICONIFY_SIZE.value,
        "min_token_length": mapping.min_token_length, "fold_plurals": mapping.fold_plurals,
        "phrase_mode": mapping.phrase_mode,
        "ignore": tuple(mapping_flags.IGNORE.value),
        "ignore_words": tuple(mapping_flags.IGNORE_WORDS.value),
    }
    for key, flag in [("iconify", _ICONIFY), ("iconify_include_sets", _INCLUDE_SETS),
                      ("iconify_exclude_sets", _EXCLUDE_SETS),
                      ("iconify_exclude_categories", _EXCLUDE_CATEGORIES),
                      ("iconify_exclude_licenses", _EXCLUDE_LICENSES)]:
        out[key] = None if flag.value is None else tuple(flag.value)
    if _SPLIT_FRACTIONS.value is not None:
        try:
            out["split_fractions"] = tuple(float(v) for v in _SPLIT_FRACTIONS.value)
        except ValueError:
            raise UserError(f"--split_fractions={_SPLIT_FRACTIONS.value}: three numbers") from None
    out = {k: v for k, v in out.items() if v is not None}
    background, given = _background(_BACKGROUND.value)
    if given:
        out["background"] = background
    return out


def main(argv) -> int:
    if not _CONFIG.value:
        raise UserError("--config is required: curated or noisy")
    if not _MANUAL_DIR.value:
        raise UserError("--manual_dir is required: the folder with your images")
    opts = options()
    try:
        builder = builder_lib.build(_CONFIG.value, _MANUAL_DIR.value, _DATA_DIR.value,
                                    name=_NAME.value, overwrite=_OVERWRITE.value,
                                    num_workers=_NUM_WORKERS.value,
                                    beam_options=_BEAM_OPTIONS.value, **opts)
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
