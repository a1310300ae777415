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

This module is the thin TFDS builder (its configs and ``_info``/``_split_generators``/
``_generate_examples``) and :func:`build`, its front door; the sources sit beside it:
:mod:`.curated_folders`, :mod:`.noisy_names` + :mod:`.iconify_icons` (planned into a
:mod:`.file_plan`), :mod:`.split_assignment`, :mod:`.example_encoding` (plain and Beam)
and :mod:`.build_report`.

Build with ``tfds build illustrations
--imports=illustration_tl.datasets.illustrations --config=curated
--manual_dir=DIR`` or ``illustration-tl build``; custom options go in a
config with another name, e.g. ``--config='{"name": "noisy5", "source":
"noisy", "min_images_per_class": 5}'``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from illustration_tl.core import common_settings
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.datasets import (
    batch_ingestion,
    iconify,
    imagenet,
    ingestion,
    name_mapping,
    splits,
)
from illustration_tl.datasets.illustrations import (
    beam_mode,
    build_report,
    curated_folders,
    example_checks,
    example_encoding,
    file_plan,
    noisy_names,
    rebuild,
    shuffle_memory,
)
from illustration_tl.errors import UserError

SKIPPED_FILE = build_report.SKIPPED_FILE  # importable here, as before the split
_CACHE_DIR = "ingest-cache"
_NOISY_ONLY = {"min_images_per_class", "min_token_length", "fold_plurals", "ignore",
               "ignore_words", "phrase_mode", "scan_json"}


@dataclasses.dataclass(eq=False)
class IllustrationsConfig(tfds.core.BuilderConfig):
    """Options of an `illustrations` build; the defaults follow the paper."""

    source: str = ""  # "curated" or "noisy"; empty = inferred from the config name
    # Ingestion (ingestion.load_image, via batch_ingestion).
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

    def ingest_options(self) -> batch_ingestion.IngestOptions:
        return batch_ingestion.IngestOptions(
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


def _say(line: str) -> None:
    """A progress line on stderr: plain text, readable in a log file."""
    print(line, file=sys.stderr, flush=True)


class Builder(tfds.core.GeneratorBasedBuilder):
    """Clip-art illustrations from a folder (and Iconify collections), paper §4."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: curated and noisy configs."}
    BUILDER_CONFIGS = [CURATED, NOISY]
    ingest_workers: int | None = None  # overrides the config's num_workers when set
    shuffle_memory_mb: int = shuffle_memory.DEFAULT_SHUFFLE_MEMORY_MB

    def download_and_prepare(self, *args: Any, **kwargs: Any) -> None:
        """TFDS's ``download_and_prepare`` with the writer's memory bounded
        (:data:`.shuffle_memory.DEFAULT_SHUFFLE_MEMORY_MB`; also under ``tfds build``)."""
        with shuffle_memory.bounded_shuffle_memory(self.shuffle_memory_mb):
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
            plan = curated_folders.plan_curated(manual_dir)
        else:
            plan = noisy_names.plan_noisy(
                manual_dir, config.mapping_options(), scan_json=config.scan_json,
                iconify_paths=config.iconify, iconify_filter=config.iconify_filter())
        workers = config.num_workers if self.ingest_workers is None else self.ingest_workers
        results = _ingest(plan.tasks, config, os.path.join(self.data_dir, _CACHE_DIR), workers)
        skipped = plan.skipped + [(r.key, r.error) for r in results.values() if r.error]
        good = {k: r for k, r in results.items() if not r.error}
        dups = splits.duplicate_report((k, r.byte_hash, r.pixel_hash) for k, r in good.items())
        if config.source == "curated":
            examples, moved = curated_folders.curated_examples(
                plan, good, split_fractions=config.split_fractions,
                validation_fraction=config.validation_fraction, split_seed=config.split_seed)
        else:
            examples, moved = noisy_names.noisy_examples(
                plan, good, min_images_per_class=config.min_images_per_class,
                split_fractions=config.split_fractions, split_seed=config.split_seed)
        class_names = sorted({e.label for _, e in examples})
        what = ("class folder" if config.source == "curated" else
                f"ImageNet class with at least {config.min_images_per_class} images")
        example_checks.check_classes(class_names, manual_dir, skipped, what,
                                     self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        self.info.features["label"].names = class_names
        by_split = example_checks.by_split(examples, config.split_fractions)
        example_checks.check_trained(examples, manual_dir)
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
        build_report.write_report(self.data_dir, skipped, report)
        logging.info("illustrations/%s: %s", config.name, dups.format())
        # self.data_dir is TFDS's incomplete.* folder until the build succeeds.
        final_dir = os.path.join(os.path.dirname(os.path.normpath(self.data_dir)),
                                 str(self.version))
        build_report.log_skipped(config.name, skipped, final_dir)
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

    def _generate_examples(self, examples: Sequence[example_encoding.Example]):
        noisy = self.builder_config.source == "noisy"
        for e in examples:
            yield example_encoding.key_features(e, noisy)

    def _beam_examples(self, split: str, examples: Sequence[example_encoding.Example]):
        """The same ``(key, features)`` as :meth:`_generate_examples`, as a Beam
        PTransform (:func:`.beam_mode.beam_examples`)."""
        noisy = self.builder_config.source == "noisy"
        return beam_mode.beam_examples(split, examples, noisy)


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
    shuffle_memory_mb: int = setting(shuffle_memory.DEFAULT_SHUFFLE_MEMORY_MB,
                                     "Megabytes of a split's examples held in memory while "
                                     "writing; beyond it they spill to sorted files on disk "
                                     "(same dataset).")
    beam_options: tuple[str, ...] | None = optional(
        "Write the examples with Apache Beam (TFDS Beam mode; the tfds-cli extra): Beam "
        "pipeline flags, e.g. --beam_options=--runner=DirectRunner or Dataflow/Spark/Flink "
        "options. Files are still decoded by this process first.")


def build(config: str, manual_dir: str, data_dir: str | None = None, *,
          name: str | None = None, overwrite: bool = False, num_workers: int | None = None,
          flag: str = "--manual_dir", beam_options: Sequence[str] | None = None,
          shuffle_memory_mb: int = shuffle_memory.DEFAULT_SHUFFLE_MEMORY_MB,
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
    file_plan.check_not_empty(manual_dir, flag)
    if shuffle_memory_mb < 1:
        raise UserError(f"--shuffle_memory_mb={shuffle_memory_mb}: give at least 1 (MB)")
    builder = _builder(chosen, data_dir, num_workers, shuffle_memory_mb)
    if overwrite and os.path.isdir(builder.data_dir):
        return rebuild.rebuild_then_swap(
            builder, lambda d: _builder(chosen, d, num_workers, shuffle_memory_mb), manual_dir,
            beam_options)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, beam_options=beam_mode.pipeline_options(beam_options),
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
    return builder


def curated_plan(manual_dir: str, config: str = "curated") -> dict[str, Any]:
    """What a curated build of ``manual_dir`` would hold, without decoding anything
    (``fit --dry_run``): the layout, the classes, about how many images fall in each
    split (fractions of the preset; the real split hashes pixels), the files left out
    before decoding, and the number of files to decode."""
    preset = PRESETS[config]
    return curated_folders.estimate(curated_folders.plan_curated(manual_dir),
                                    preset.split_fractions, preset.validation_fraction)


def _builder(config: Any, data_dir: str | None, num_workers: int | None,
             shuffle_memory_mb: int) -> Builder:
    builder = Builder(config=config, data_dir=data_dir)
    builder.ingest_workers = num_workers
    builder.shuffle_memory_mb = shuffle_memory_mb
    return builder


def _ingest(tasks, config: IllustrationsConfig, cache_dir: str, num_workers: int
            ) -> dict[str, batch_ingestion.Ingested]:
    _say(f"illustrations/{config.name}: decoding {len(tasks):,} files")
    progress = lambda line: _say(f"illustrations/{config.name}: {line}")  # noqa: E731
    return {r.key: r for r in batch_ingestion.ingest_many(
        tasks, config.ingest_options(), cache_dir, num_workers=num_workers,
        progress=progress)}


def _class_imagenet_indices(class_names: Sequence[str], source: str) -> list[int]:
    if source == "noisy":
        return [imagenet.by_wnid(w).index for w in class_names]
    return [curated_folders.imagenet_index(c) for c in class_names]
