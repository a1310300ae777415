"""The `illustrations` TFDS builder: the paper's noisy and curated clip-art sets (§4).

Two configurations over data the user already has (``manual_dir``):

- ``curated`` (§4.2): one folder per class, either the authors' layout
  ``train/<class>/*`` + ``val/<class>/*`` (val is the 20% test split; a
  deterministic 20% of train becomes validation: 64/16/20) or a flat
  ``<class>/*`` split 64/16/20. Labels are the folder names; each class also
  carries its ImageNet index and wnid (-1 / "" when it is not an ImageNet class).
- ``noisy`` (§4.1): any folder tree of illustrations (PNG, JPEG, GIF, BMP,
  WebP, SVG) plus Iconify JSON collections, labelled by the file-name →
  ImageNet-class rule (an image is copied into every class it matches),
  keeping classes with at least ``min_images_per_class`` images.

Every file is decoded once by :mod:`illustration_tl.datasets.ingestion` (format from the
bytes, alpha composited on white, any mode to RGB, first frame, bomb guard,
longer side <= ``max_side``); files that cannot be read are skipped and listed
in ``skipped.tsv`` next to the dataset. Splits come from a hash of the decoded
pixels (:mod:`illustration_tl.datasets.splits`), so duplicates never straddle splits.

Build with ``tfds build illustrations
--imports=illustration_tl.datasets.illustrations --config=curated
--manual_dir=DIR`` or ``illustration-tl build``; custom options go in a
config with another name, e.g. ``--config='{"name": "noisy5", "source":
"noisy", "min_images_per_class": 5}'``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from illustration_tl.core import common_settings, files
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.datasets import iconify, imagenet, ingestion, name_mapping, splits
from illustration_tl.errors import UserError

SKIPPED_FILE = "skipped.tsv"
REPORT_FILE = "build_report.json"
_CACHE_DIR = "ingest-cache"
_LOGGED_SKIPS = 200  # skipped files listed one per line in the build log
# Authors' layout: folder name -> split. "val" is the paper's test split.
_LAYOUT_SPLITS = {"train": "train", "validation": "validation", "val": "test", "test": "test"}
_HELD_OUT_ORDER = {"train": 0, "validation": 1, "test": 2}
_ESCAPED_BYTE = re.compile(r"\\x[0-9a-f]{2}")
_NOISY_ONLY = {"min_images_per_class", "min_token_length", "fold_plurals", "ignore",
               "ignore_words", "phrase_mode", "scan_json"}


@dataclasses.dataclass(eq=False)
class IllustrationsConfig(tfds.core.BuilderConfig):
    """Options of an `illustrations` build; the defaults follow the paper."""

    source: str = ""  # "curated" or "noisy"; empty = inferred from the config name
    # Ingestion (ingestion.load_image).
    max_side: int = 512
    background: tuple[int, int, int] | None = ingestion.DEFAULT_BACKGROUND
    max_pixels: int | None = ingestion.DEFAULT_MAX_PIXELS
    svg_size: int = ingestion.DEFAULT_SVG_SIZE
    # Splits (paper §4: 64/16/20).
    split_fractions: tuple[float, float, float] = splits.PAPER_FRACTIONS
    validation_fraction: float = 0.2  # of train/, in the authors' layout
    split_seed: int = 0
    # Noisy: the name -> class rule (name_mapping.MappingOptions) and class filter.
    min_images_per_class: int = 10
    min_token_length: int = 1
    fold_plurals: bool = False
    ignore: tuple[str, ...] = ()
    ignore_words: tuple[str, ...] = ()
    phrase_mode: bool = False
    # Noisy: Iconify JSON collections (iconify.IconifyFilter).
    iconify: tuple[str, ...] = ()  # extra files/folders; relative paths are under manual_dir
    scan_json: bool = True         # also read *.json collections found in manual_dir
    iconify_include_sets: tuple[str, ...] = ()
    iconify_exclude_sets: tuple[str, ...] = ()
    iconify_exclude_categories: tuple[str, ...] = ()
    iconify_exclude_licenses: tuple[str, ...] = ()
    iconify_hidden: bool = False
    iconify_aliases: bool = False
    iconify_size: int = 256        # longer side of rendered icons (drawn at 16-24 px)
    # Parallel decoding: 0 = one process per CPU.
    num_workers: int = 0

    def __post_init__(self):
        # JSON configs (tfds build --config='{...}') give lists; keep tuples.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list) and f.name not in ("supported_versions", "tags"):
                setattr(self, f.name, tuple(value))
        if not self.source:
            self.source = "noisy" if self.name.startswith("noisy") else "curated"
        if self.source not in ("curated", "noisy"):
            raise ValueError(f"source={self.source!r}: use 'curated' or 'noisy'")
        if self.max_side is not None and self.max_side <= 0:
            raise ValueError(f"max_side={self.max_side}: must be positive")
        splits.check_fractions(self.split_fractions)
        if self.description is None:
            self.description = f"{self.source} illustrations (custom options)"

    def options_dict(self) -> dict[str, Any]:
        """The build options, for the dataset's metadata."""
        skip = {"name", "version", "release_notes", "supported_versions", "description", "tags",
                "num_workers"}
        if self.source == "curated":  # the name rule and Iconify do not apply
            noisy_only = {f.name for f in dataclasses.fields(self)
                          if f.name.startswith("iconify") or f.name in _NOISY_ONLY}
            skip |= noisy_only
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in skip}

    def ingest_options(self) -> ingestion.IngestOptions:
        return ingestion.IngestOptions(
            background=None if self.background is None else tuple(self.background),
            max_side=self.max_side, max_pixels=self.max_pixels, svg_size=self.svg_size,
            inline_svg_size=self.iconify_size)

    def mapping_options(self) -> name_mapping.MappingOptions:
        return name_mapping.MappingOptions.create(
            min_token_length=self.min_token_length, fold_plurals=self.fold_plurals,
            ignore=self.ignore, extra_ignore_words=self.ignore_words,
            phrase_mode=self.phrase_mode)

    def iconify_filter(self) -> iconify.IconifyFilter:
        return iconify.IconifyFilter(
            include_sets=self.iconify_include_sets, exclude_sets=self.iconify_exclude_sets,
            exclude_categories=self.iconify_exclude_categories,
            exclude_licenses=self.iconify_exclude_licenses,
            include_hidden=self.iconify_hidden, include_aliases=self.iconify_aliases)


CURATED = IllustrationsConfig(
    name="curated", source="curated",
    description="Curated clip art, one folder per class (paper §4.2: 23 classes), "
                "authors' train/ + val/ layout or flat <class>/ folders; splits 64/16/20.")
NOISY = IllustrationsConfig(
    name="noisy", source="noisy",
    description="Noisy clip art labelled by the file-name -> ImageNet-class rule "
                "(paper §4.1), copied into every matched class; classes with at least "
                "10 images; splits 64/16/20.")


@dataclasses.dataclass(frozen=True)
class _Example:
    key: str
    file_name: str
    png_path: str
    label: str
    imagenet_index: int
    matched_words: str = ""


def _say(line: str) -> None:
    """A progress line on stderr: plain text, readable in a log file."""
    print(line, file=sys.stderr, flush=True)


DEFAULT_SHUFFLE_MEMORY_MB = 64
"""How much of a split's serialized examples TFDS's writer may hold in memory before it
spills them to its 1,000 sorted bucket files (TFDS's own bound is 1 GB per split, which
made a build's peak memory grow with the set up to that size). The examples and their
order are the same either way."""


@contextlib.contextmanager
def bounded_shuffle_memory(megabytes: int) -> Iterator[None]:
    """Lowers ``tensorflow_datasets.core.shuffle.MAX_MEM_BUFFER_SIZE`` for one build."""
    from tensorflow_datasets.core import shuffle

    previous = shuffle.MAX_MEM_BUFFER_SIZE
    shuffle.MAX_MEM_BUFFER_SIZE = int(megabytes) << 20
    try:
        yield
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = previous


class Builder(tfds.core.GeneratorBasedBuilder):
    """Clip-art illustrations from a folder (and Iconify collections), paper §4."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: curated and noisy configs."}
    BUILDER_CONFIGS = [CURATED, NOISY]
    ingest_workers: int | None = None  # overrides the config's num_workers when set
    shuffle_memory_mb: int = DEFAULT_SHUFFLE_MEMORY_MB

    def download_and_prepare(self, *args: Any, **kwargs: Any) -> None:
        """TFDS's ``download_and_prepare`` with the writer's memory bounded
        (:data:`DEFAULT_SHUFFLE_MEMORY_MB`; also under ``tfds build``)."""
        with bounded_shuffle_memory(self.shuffle_memory_mb):
            super().download_and_prepare(*args, **kwargs)
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Point --manual_dir at your images.
    curated: MANUAL_DIR/train/<class>/* and MANUAL_DIR/val/<class>/* (the authors'
      layout; val is the test split), or MANUAL_DIR/<class>/* (split 64/16/20).
    noisy: any folder tree of images named by their content, and/or Iconify JSON
      collections (e.g. node_modules/@iconify/json/json/*.json) inside MANUAL_DIR.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "label": tfds.features.ClassLabel(),
            "imagenet_index": tfds.features.Scalar(dtype=np.int64),
            "file_name": tfds.features.Text(),
        }
        if self.builder_config.source == "noisy":
            features["matched_words"] = tfds.features.Text()
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label"),
            homepage="https://github.com/illustration-tl/illustration-tl",
            metadata=tfds.core.MetadataDict(),
        )

    # TFDS prints "Downloading and preparing dataset Unknown size ..." and "...
    # downloaded and prepared" in bold to stdout; nothing is downloaded here.
    def _log_download_bytes(self) -> None:
        _say(f"illustrations/{self.builder_config.name}: building into {self.data_dir}")

    def _log_download_done(self) -> None:
        pass

    def _download_and_prepare(self, dl_manager, download_config=None):
        try:
            super()._download_and_prepare(dl_manager, download_config)
        finally:
            shutil.rmtree(os.path.join(self.data_dir, _CACHE_DIR), ignore_errors=True)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config: IllustrationsConfig = self.builder_config
        manual_dir = os.fspath(dl_manager.manual_dir)
        if not os.path.isdir(manual_dir):
            raise FileNotFoundError(f"manual_dir {manual_dir!r} is not a folder. "
                                    f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        started = time.monotonic()
        if config.source == "curated":
            plan = _plan_curated(manual_dir)
        else:
            plan = _plan_noisy(manual_dir, config)
        workers = config.num_workers if self.ingest_workers is None else self.ingest_workers
        results = _ingest(plan.tasks, config, os.path.join(self.data_dir, _CACHE_DIR), workers)
        skipped = plan.skipped + [(r.key, r.error) for r in results.values() if r.error]
        good = {k: r for k, r in results.items() if not r.error}
        dups = splits.duplicate_report((k, r.byte_hash, r.pixel_hash) for k, r in good.items())
        if config.source == "curated":
            examples, moved = _curated_examples(plan, good, config)
        else:
            examples, moved = _noisy_examples(plan, good, config)
        class_names = sorted({e.label for _, e in examples})
        if not class_names:
            raise ValueError(f"no usable images under {manual_dir!r}: {len(skipped)} files "
                             f"skipped{_first_skips(skipped)}. "
                             f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        if len(class_names) < 2:
            what = ("class folder" if config.source == "curated" else
                    f"ImageNet class with at least {config.min_images_per_class} images")
            raise ValueError(f"only one class ({class_names[0]!r}) has usable images under "
                             f"{manual_dir!r}: a classifier needs at least 2 classes; add "
                             f"images of another {what}")
        self.info.features["label"].names = class_names
        by_split = collections.defaultdict(list)
        for split, example in examples:
            by_split[split].append(example)
        empty = [s for s in splits.SPLITS if not by_split[s]]
        if empty:
            raise ValueError(f"split(s) {', '.join(empty)} would be empty: {len(examples)} "
                             f"examples are too few for split fractions "
                             f"{config.split_fractions}; add images")
        untrained = sorted({e.label for sp, e in examples if sp == "test"}
                           - {e.label for sp, e in examples if sp != "test"})
        if untrained:
            raise ValueError(f"class {untrained[0]!r} has test images (val/) but no training "
                             f"images (train/) under {manual_dir!r}"
                             + (f" ({len(untrained)} such classes)" if len(untrained) > 1
                                else "")
                             + f"; add its images under train/{untrained[0]}/ or remove "
                             f"val/{untrained[0]}/")
        indices = _class_imagenet_indices(class_names, config.source)
        report = {
            "source": config.source, "layout": plan.layout,
            "files_seen": plan.files_seen, "files_unmapped": plan.unmapped,
            "files_decoded": len(good), "files_skipped": len(skipped),
            "duplicates": dups.as_dict(), "moved_to_held_out_split_as_duplicates": moved,
            "classes_kept": len(class_names), "classes_dropped": plan.dropped_classes,
            "examples": {s: len(by_split[s]) for s in splits.SPLITS},
            "ingest_seconds": round(time.monotonic() - started, 1),
            "options": config.options_dict(),
        }
        self.info.metadata.update({
            "imagenet_indices": indices,
            "imagenet_wnids": [imagenet.by_index(i).wnid if i >= 0 else "" for i in indices],
            **{k: v for k, v in report.items() if k != "ingest_seconds"},
        })
        _write_report(self.data_dir, skipped, report)
        logging.info("illustrations/%s: %s", config.name, dups.format())
        # self.data_dir is TFDS's incomplete.* folder until the build succeeds.
        final_dir = os.path.join(os.path.dirname(os.path.normpath(self.data_dir)),
                                 str(self.version))
        logging.info("illustrations/%s: %d files skipped (listed in %s)", config.name,
                     len(skipped), os.path.join(final_dir, SKIPPED_FILE))
        for name, reason in sorted(skipped)[:_LOGGED_SKIPS]:
            logging.info("  skipped %s: %s", name, reason)
        if len(skipped) > _LOGGED_SKIPS:
            logging.info("  ... and %d more", len(skipped) - _LOGGED_SKIPS)
        logging.info("illustrations/%s: %d classes, examples %s", config.name,
                     len(class_names), report["examples"])
        if self._use_beam:
            return {s: self._beam_examples(s, by_split[s]) for s in splits.SPLITS}
        return {s: self._generate_examples(by_split[s]) for s in splits.SPLITS}

    # TFDS's Beam mode: set when download_and_prepare gets a beam_runner or beam_options.
    _use_beam: bool = False

    def _generate_splits(self, dl_manager, download_config):
        self._use_beam = (download_config.beam_runner is not None
                          or download_config.beam_options is not None)
        return super()._generate_splits(dl_manager, download_config)

    def _generate_examples(self, examples: Sequence[_Example]):
        noisy = self.builder_config.source == "noisy"
        for e in examples:
            yield _key_features(e, noisy)

    def _beam_examples(self, split: str, examples: Sequence[_Example]):
        """The same ``(key, features)`` as :meth:`_generate_examples`, as a Beam
        PTransform: encoding, shuffling and writing the examples run on the Beam
        runner (Dataflow, Spark, Flink, or DirectRunner locally). Files are decoded
        by the driver first (into the dataset's ingest cache, which a remote runner's
        workers must be able to read)."""
        import apache_beam as beam

        noisy = self.builder_config.source == "noisy"
        return (f"Create_{split}" >> beam.Create(list(examples))
                | f"Features_{split}" >> beam.Map(_key_features, noisy))


def _key_features(e: _Example, noisy: bool) -> tuple[str, dict[str, Any]]:
    """One example's key and features (the plain and the Beam build share it)."""
    features = {"image": e.png_path, "label": e.label,
                "imagenet_index": e.imagenet_index, "file_name": e.file_name}
    if noisy:
        features["matched_words"] = e.matched_words
    return e.key, features


PRESETS = {c.name: c for c in (CURATED, NOISY)}


def _preset(field: str) -> str:
    """A preset's value of ``field`` as a flag would spell it."""
    value = getattr(CURATED, field)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclasses.dataclass
class BuildConfig:
    """The ``build`` command's settings, one ``illustration-tl build`` flag each
    (:mod:`config_flags`), besides the name-mapping flags (``commands.mapping_flags``).
    A dataset option left None keeps the preset's value (:class:`IllustrationsConfig`)."""

    config: str | None = optional("Preset: curated (§4.2 class folders) or noisy (§4.1 name "
                                  "rule).", choices=tuple(PRESETS))
    manual_dir: str | None = optional("Folder with your images.")
    data_dir: str | None = common_settings.data_dir()
    name: str | None = optional("Config name for a dataset with non-preset options (TFDS "
                                "stores each config under its name).")
    overwrite: bool = setting(False, "Rebuild even if the dataset exists.")
    max_side: int | None = optional("Downscale so the longer side is at most this many "
                                    f"pixels (preset {_preset('max_side')}).")
    background: str | None = optional("R,G,B colour under transparent pixels (preset "
                                      f"{_preset('background')}), or 'none' to drop alpha.")
    max_pixels: int | None = optional("Skip images declaring more pixels (decompression-bomb "
                                      f"guard; preset {_preset('max_pixels')}).")
    svg_size: int | None = optional("Longer side of rasterized SVGs (preset "
                                    f"{_preset('svg_size')}).")
    split_fractions: tuple[str, ...] | None = optional(
        f"train,validation,test fractions (preset {_preset('split_fractions')}).")
    validation_fraction: float | None = optional(
        "Share of train/ used as validation in the authors' layout (preset "
        f"{_preset('validation_fraction')}).")
    split_seed: int | None = optional("Seed of the content-hash split (preset "
                                      f"{_preset('split_seed')}).")
    min_images_per_class: int | None = optional(
        "noisy: keep classes with at least this many images (preset "
        f"{_preset('min_images_per_class')}).")
    iconify: tuple[str, ...] | None = optional("noisy: Iconify JSON files or folders to read "
                                               "besides the manual dir.")
    scan_json: bool | None = optional("noisy: read Iconify collections among the *.json "
                                      f"files in the manual dir (preset {_preset('scan_json')}).")
    iconify_include_sets: tuple[str, ...] | None = optional("Only these Iconify set "
                                                            "prefixes.")
    iconify_exclude_sets: tuple[str, ...] | None = optional("Leave out these Iconify sets.")
    iconify_exclude_categories: tuple[str, ...] | None = optional(
        "Leave out Iconify sets whose category contains any of these words (e.g. "
        "logos,flags,programming).")
    iconify_exclude_licenses: tuple[str, ...] | None = optional(
        "Leave out Iconify sets with these SPDX licenses, or 'non-commercial' for every -NC "
        "license.")
    iconify_hidden: bool | None = optional("Include hidden (deprecated) icons.")
    iconify_aliases: bool | None = optional("Include alias names of icons.")
    iconify_size: int | None = optional("Longer side of rendered Iconify icons (preset "
                                        f"{_preset('iconify_size')}).")
    num_workers: int | None = common_settings.num_workers()
    shuffle_memory_mb: int = setting(DEFAULT_SHUFFLE_MEMORY_MB, "Megabytes of a split's "
                                     "examples held in memory while writing; beyond it they "
                                     "spill to sorted files on disk (same dataset).")
    beam_options: tuple[str, ...] | None = optional(
        "Write the examples with Apache Beam (TFDS Beam mode; the tfds-cli extra): Beam "
        "pipeline flags, e.g. --beam_options=--runner=DirectRunner or Dataflow/Spark/Flink "
        "options. Files are still decoded by this process first.")


def build(config: str, manual_dir: str, data_dir: str | None = None, *,
          name: str | None = None, overwrite: bool = False, num_workers: int | None = None,
          flag: str = "--manual_dir", beam_options: Sequence[str] | None = None,
          shuffle_memory_mb: int = DEFAULT_SHUFFLE_MEMORY_MB,
          **options: Any) -> tfds.core.DatasetBuilder:
    """``tfds build`` for people who don't know TFDS: builds (or reuses) one config.

    Args:
      config: ``curated`` or ``noisy``, the preset to start from.
      manual_dir: the user's images.
      data_dir: TFDS data folder (None: ``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``).
      name: config name for custom ``options``; TFDS keeps each config's data
        under its name, so presets cannot be changed in place.
      overwrite: rebuild even if the dataset exists; the new dataset is built beside
        the old one and replaces it only once complete.
      num_workers: decoding processes (0 = one per CPU; None = the config's).
      flag: how error messages name ``manual_dir``.
      beam_options: Apache Beam pipeline flags (``["--runner=DirectRunner"]``,
        Dataflow/Spark/Flink options): write the examples with TFDS's Beam mode
        (needs the ``tfds-cli`` extra). None: the plain in-process build.
      shuffle_memory_mb: serialized examples per split held in memory while
        writing; beyond it TFDS spills them to sorted bucket files on disk
        (same examples, same order), so peak memory stays flat as the set grows.
      **options: :class:`IllustrationsConfig` fields that differ from the preset
        (values equal to the preset's are ignored).

    Returns:
      The prepared builder (``builder.info``, ``builder.data_dir``).
    """
    if config not in PRESETS:
        raise UserError(f"--config={config!r}: choose from {', '.join(PRESETS)}")
    if not os.path.isdir(manual_dir):
        raise UserError(f"{flag}={manual_dir!r} is not a folder of images")
    preset = PRESETS[config]
    fields = {f.name for f in dataclasses.fields(IllustrationsConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise UserError(f"unknown dataset option(s) {', '.join(unknown)}")
    changed = {k: v for k, v in options.items() if v != getattr(preset, k)}
    name = name or config
    if changed and name in PRESETS:
        raise UserError(f"{', '.join(sorted(changed))} differ from the {config!r} preset: give "
                        f"the custom dataset a new name with --name (e.g. {config}_custom)")
    if name == config and not changed:
        chosen: Any = config
    else:
        description = f"{preset.description} Custom options: {changed}."
        chosen = dataclasses.replace(preset, name=name, description=description, **changed)
    _check_not_empty(manual_dir, flag)
    if shuffle_memory_mb < 1:
        raise UserError(f"--shuffle_memory_mb={shuffle_memory_mb}: give at least 1 (MB)")
    builder = _builder(chosen, data_dir, num_workers, shuffle_memory_mb)
    if overwrite and os.path.isdir(builder.data_dir):
        return _rebuild_then_swap(builder, chosen, manual_dir, num_workers, beam_options)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, beam_options=_pipeline_options(beam_options),
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    return builder


def curated_plan(manual_dir: str, config: str = "curated") -> dict[str, Any]:
    """What a curated build of ``manual_dir`` would hold, without decoding anything
    (``fit --dry_run``): the layout, the classes, about how many images fall in each
    split (fractions of the preset; the real split hashes pixels), the files left out
    before decoding, and the number of files to decode."""
    preset = PRESETS[config]
    plan = _plan_curated(manual_dir)
    per_class: dict[str, int] = collections.Counter(c for c, _ in plan.curated.values())
    fixed = collections.Counter(sp for _, sp in plan.curated.values() if sp)
    loose = sum(1 for _, sp in plan.curated.values() if not sp)
    f_train, f_val, f_test = preset.split_fractions
    examples = {"train": f_train * loose, "validation": f_val * loose, "test": f_test * loose}
    if fixed:
        train = fixed["train"]
        has_val = fixed["validation"] > 0
        examples["train"] += train * (1 if has_val else 1 - preset.validation_fraction)
        examples["validation"] += fixed["validation"] + (
            0 if has_val else train * preset.validation_fraction)
        examples["test"] += fixed["test"]
    return {"layout": plan.layout, "classes": sorted(per_class),
            "images_per_class": dict(sorted(per_class.items())),
            "examples": {k: int(round(v)) for k, v in examples.items()},
            "files": len(plan.tasks), "skipped": list(plan.skipped)}


def _builder(config: Any, data_dir: str | None, num_workers: int | None,
             shuffle_memory_mb: int) -> Builder:
    builder = Builder(config=config, data_dir=data_dir)
    builder.ingest_workers = num_workers
    builder.shuffle_memory_mb = shuffle_memory_mb
    return builder


def _check_not_empty(manual_dir: str, flag: str) -> None:
    """Refuses a folder with no (non-hidden, regular) file in it, in one line."""
    why: list[str] = []
    for _ in files.walk(manual_dir, on_skip=lambda s: why.append(s.reason)):
        return
    detail = f" ({why[0]})" if why else ""
    raise UserError(f"{flag}={manual_dir!r} holds no image files{detail}; point it at "
                    "your images (curated: one folder per class)")


def _pipeline_options(flags: Sequence[str] | None) -> Any:
    """Beam ``PipelineOptions`` from command-line style flags, or None."""
    if not flags:
        return None
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise UserError("--beam_options needs Apache Beam: pip install "
                        "'illustration-tl[tfds-cli]'") from None
    return PipelineOptions(list(flags))


def _rebuild_then_swap(old: Builder, config: Any, manual_dir: str,
                       num_workers: int | None, beam_options: Sequence[str] | None = None
                       ) -> Builder:
    """``--overwrite`` of an existing dataset: the new one is built beside it, and only
    when it is complete does it replace the old one (which a failed build leaves as
    it was)."""
    final_dir = os.fspath(old.data_dir)  # <root>/illustrations/<config>/<version>
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.normpath(final_dir))))
    staging = tempfile.mkdtemp(dir=root, prefix=".illustrations-rebuild-")
    try:
        fresh = _builder(config, staging, num_workers, old.shuffle_memory_mb)
        fresh.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, beam_options=_pipeline_options(beam_options)))
        files.replace_dir(os.fspath(fresh.data_dir), final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _builder(config, root, num_workers, old.shuffle_memory_mb)


# ---------------------------------------------------------------------------
# Planning: which files to decode, and what each one is.


@dataclasses.dataclass
class _Plan:
    layout: str
    tasks: list[tuple[str, str | bytes]] = dataclasses.field(default_factory=list)
    # curated: file name -> (class folder, folder split); noisy: file name -> matches
    curated: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    noisy: dict[str, list[name_mapping.ClassMatch]] = dataclasses.field(default_factory=dict)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    files_seen: int = 0
    unmapped: int = 0
    dropped_classes: int = 0


def _walk(root: str, plan: _Plan) -> Iterator[tuple[str, str]]:
    """``(name, path)`` of the non-hidden regular files under ``root``, sorted.

    ``name`` is the relative path ('/'-separated) as printable text: bytes that
    are not UTF-8 come out backslash-escaped (``caf\\xe9.png``), and that is
    how the file is named in ``file_name`` and ``skipped.tsv``; ``path`` opens
    it. Symlinks are followed only inside ``root``; links leading out, folder
    cycles, unreadable folders, FIFOs, devices, and hidden files and folders (a
    class folder ``..x``, ``.DS_Store``) are listed in ``plan.skipped`` (see
    :func:`illustration_tl.core.files.walk`), never dropped silently.
    """
    def skip(entry: files.Skipped) -> None:
        plan.skipped.append((files.display_name(entry.rel), entry.reason))

    seen: set[str] = set()
    for rel in files.walk(root, report_hidden=True, on_skip=skip):
        name = files.display_name(rel)
        if name in seen:  # a real name that looks like another's escaped form
            plan.skipped.append((name, "file name collides with another once escaped"))
            continue
        seen.add(name)
        yield name, os.path.join(root, *rel.split("/"))


def _match_text(name: str) -> str:
    """The text the name rule reads: escapes of non-UTF-8 bytes become spaces."""
    return _ESCAPED_BYTE.sub(" ", name)


def _first_skips(skipped: Sequence[tuple[str, str]], n: int = 2) -> str:
    if not skipped:
        return ""
    shown = "; ".join(f"{name}: {reason}" for name, reason in sorted(skipped)[:n])
    more = f"; ... see {SKIPPED_FILE}" if len(skipped) > n else ""
    return f" ({shown}{more})"


def _plan_curated(manual_dir: str) -> _Plan:
    """Class folders in the authors' layout (train/ + val/) or flat (<class>/)."""
    top = sorted(d for d in os.listdir(manual_dir)
                 if os.path.isdir(os.path.join(manual_dir, d)) and not d.startswith("."))
    authors = "train" in top
    if authors and "val" in top and "test" in top:
        raise ValueError(f"{manual_dir!r} has both val/ and test/; the authors' layout "
                         "has train/ and val/ (val = test split), optionally validation/")
    plan = _Plan(layout="authors" if authors else "flat")
    for rel, path in _walk(manual_dir, plan):
        parts = rel.split("/")
        plan.files_seen += 1
        if authors:
            split = _LAYOUT_SPLITS.get(parts[0])
            if split is None or len(parts) < 3:
                plan.skipped.append((rel, "outside train/<class>/ and val/<class>/"))
                continue
            class_name = parts[1]
        else:
            if len(parts) < 2:
                plan.skipped.append((rel, "not inside a class folder"))
                continue
            split, class_name = "", parts[0]
        plan.curated[rel] = (class_name, split)
        plan.tasks.append((rel, path))
    return plan


def _plan_noisy(manual_dir: str, config: IllustrationsConfig) -> _Plan:
    """Image files and Iconify icons whose names map to at least one ImageNet class."""
    plan = _Plan(layout="noisy")
    mapper = name_mapping.NameMapper(config.mapping_options())
    json_files = []
    for rel, path in _walk(manual_dir, plan):
        if rel.lower().endswith(".json"):
            if config.scan_json:
                json_files.append(path)
            continue
        plan.files_seen += 1
        matches = mapper.match(_match_text(rel))
        if not matches:
            plan.unmapped += 1
            continue
        plan.noisy[rel] = matches
        plan.tasks.append((rel, path))
    extra = [p if os.path.isabs(p) else os.path.join(manual_dir, p) for p in config.iconify]
    missing = [p for p in extra if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"iconify path(s) not found: {', '.join(missing)}")
    selection = config.iconify_filter()
    def skip(entry: files.Skipped) -> None:
        plan.skipped.append((files.display_name(entry.rel), entry.reason))

    for path in iconify.find_collections(json_files + extra, on_skip=skip):
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
    return plan


def _ingest(tasks, config: IllustrationsConfig, cache_dir: str, num_workers: int
            ) -> dict[str, ingestion.Ingested]:
    _say(f"illustrations/{config.name}: decoding {len(tasks):,} files")
    progress = lambda line: _say(f"illustrations/{config.name}: {line}")  # noqa: E731
    return {r.key: r for r in ingestion.ingest_many(
        tasks, config.ingest_options(), cache_dir, num_workers=num_workers,
        progress=progress)}


# ---------------------------------------------------------------------------
# Examples and splits.


def _group_split(members: Sequence[str], split_of: dict[str, str]) -> str:
    """The most held-out split among duplicates: test > validation > train."""
    return max((split_of[m] for m in members), key=_HELD_OUT_ORDER.__getitem__)


def _curated_examples(plan: _Plan, good: dict[str, ingestion.Ingested],
                      config: IllustrationsConfig) -> tuple[list[tuple[str, _Example]], int]:
    has_validation = any(split == "validation" for _, split in plan.curated.values())
    split_of: dict[str, str] = {}
    for name, result in good.items():
        split = plan.curated[name][1]
        if not split:  # flat layout
            split = splits.assign(result.pixel_hash, config.split_fractions, config.split_seed)
        elif split == "train" and not has_validation:
            split = splits.carve_validation(result.pixel_hash, config.validation_fraction,
                                            config.split_seed)
        split_of[name] = split
    final, moved = _unify_duplicate_splits(good, split_of)
    indices = {c: _imagenet_index(c) for c, _ in plan.curated.values()}
    examples = []
    for name in sorted(good):
        class_name = plan.curated[name][0]
        examples.append((final[name], _Example(name, name, good[name].png_path, class_name,
                                               indices[class_name])))
    return examples, moved


def _unify_duplicate_splits(good: dict[str, ingestion.Ingested], split_of: dict[str, str]
                            ) -> tuple[dict[str, str], int]:
    """Puts every group of pixel-identical files in its most held-out split."""
    groups = collections.defaultdict(list)
    for name, result in good.items():
        groups[result.pixel_hash].append(name)
    final, moved = {}, 0
    for members in groups.values():
        split = _group_split(members, split_of)
        for m in members:
            final[m] = split
            moved += split != split_of[m]
    return final, moved


def _noisy_examples(plan: _Plan, good: dict[str, ingestion.Ingested],
                    config: IllustrationsConfig) -> tuple[list[tuple[str, _Example]], int]:
    counts = collections.Counter(m.wnid for name in good for m in plan.noisy[name])
    kept = {w for w, n in counts.items() if n >= config.min_images_per_class}
    plan.dropped_classes = len(counts) - len(kept)
    examples = []
    for name in sorted(good):
        result = good[name]
        split = splits.assign(result.pixel_hash, config.split_fractions, config.split_seed)
        for m in plan.noisy[name]:
            if m.wnid in kept:
                examples.append((split, _Example(f"{name}|{m.wnid}", name, result.png_path,
                                                 m.wnid, m.index, " ".join(m.matched_words))))
    return examples, 0


def _imagenet_index(class_name: str) -> int:
    found = imagenet.find(class_name)
    return found.index if found is not None else -1


def _class_imagenet_indices(class_names: Sequence[str], source: str) -> list[int]:
    if source == "noisy":
        return [imagenet.by_wnid(w).index for w in class_names]
    return [_imagenet_index(c) for c in class_names]


def _write_report(data_dir: str, skipped: Sequence[tuple[str, str]], report: dict) -> None:
    """``skipped.tsv`` (file, reason) and ``build_report.json`` next to the dataset."""
    lines = ["file\treason\n"] + [
        f"{files.display_name(name)}\t{files.display_name(reason)}\n"
        for name, reason in sorted(skipped)]
    files.atomic_write(os.path.join(data_dir, SKIPPED_FILE), "".join(lines))
    files.atomic_write(os.path.join(data_dir, REPORT_FILE),
                       json.dumps(report, indent=2, default=list))
