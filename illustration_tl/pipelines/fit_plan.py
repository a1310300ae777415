"""What a ``fit`` run will do and cost: ``fit --dry_run``, the overall ETA, progress lines.

* :func:`dry_run`: the classes, images per split, forward passes and configurations
  to search, and an estimate of each stage's time on this machine from a short
  timed probe (a few forward passes of the backbone with random weights, which
  cost what ImageNet weights cost, and a few cross-validation fits on random
  features of the real size). Nothing is written and nothing is downloaded.
* :class:`Eta`: after each stage of a real run, the stages done, the time so far
  and about how long is left (the same estimate, scaled by how the finished stages
  compared with it).
* :func:`log_skipped`: the files the dataset left out, named on the console (the
  search's own progress lines give its total: :func:`illustration_tl.heads.search.run`).

``cfg`` is a :class:`illustration_tl.pipelines.fit.FitConfig` (not imported here:
``fit`` imports this module).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from typing import Any, Callable

import numpy as np

from illustration_tl.pipelines import fit_modes, fit_scales

STAGES = ("dataset", "features", "search", "final", "reject", "evaluate", "model")
# Which measured ratio (actual / estimated seconds) corrects a stage's estimate: the
# extraction rate, or the classifier fits' (the search's estimate is an upper bound, and
# at scale its probe is far off); the others are small fixed costs, not rescaled.
# ``features_<size>`` (``--scales``) are of kind features too (:func:`kind`).
KIND = {"modes": "features", "features": "features", "search": "fits", "scales": "fits",
        "final": "fits"}
SPLITS = ("train", "validation", "test")
DECODE_SECONDS = 0.01   # per file, one core (ingestion of small clip art; measured order)
EXPORT_SECONDS = 20.0   # tracing and writing the SavedModel (VGG16 order on 2 cores)
PROBE_IMAGES = 4

__all__ = ["STAGES", "dry_run", "estimate", "Eta", "log_skipped"]


# --------------------------------------------------------------------------- progress


def log_skipped(path: str, log: Callable[[str], None], show: int = 5,
                shown_as: str | None = None) -> list[str]:
    """Names the files the dataset left out on the console: the first ``show``, then a
    count (all of them, with reasons, are in ``skipped.tsv``, named ``shown_as``: where
    it will be once the stage is in place). Returns the names."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t", 1) for line in f][1:]
    except OSError:
        return []
    if rows:
        log(f"skipped {len(rows)} file(s), listed with reasons in {shown_as or path}:")
        for row in rows[:show]:
            log(f"  {row[0]}: {row[1] if len(row) > 1 else ''}")
        if len(rows) > show:
            log(f"  ... and {len(rows) - show} more")
    return [r[0] for r in rows]


class Eta:
    """Prints ``[eta] k/6 stages done, S s elapsed, about T s left`` after each stage
    that ran (hooked on :class:`illustration_tl.pipelines.stages.Stages`)."""

    def __init__(self, cfg: Any, st: Any, include_top: str, log: Callable[[str], None]):
        self.cfg, self.st, self.top, self.log = cfg, st, include_top, log
        self.estimate: dict[str, float] | None = None
        self.start = time.perf_counter()
        st.on_done.append(self.stage_done)

    def stage_done(self, name: str, seconds: float) -> None:
        if self.estimate is None:
            try:
                with open(os.path.join(self.st.root, "dataset", "dataset.json"),
                          encoding="utf-8") as f:
                    examples = json.load(f)["examples"]
                self.estimate = estimate(self.cfg, self.top, examples, probe(self.cfg,
                                                                            self.top))
            except (OSError, ValueError, KeyError):
                return
        names = list(self.estimate)   # this run's stages (modes, features_<size>, scales)
        done = [s for s in names if s in self.st.timings]
        left = [s for s in names if s not in self.st.timings]
        elapsed = f"{len(done)}/{len(names)} stages done, " \
                  f"{time.perf_counter() - self.start:.0f} s elapsed"
        if not left:
            self.log(f"[eta] {elapsed}")
            return
        remaining = sum(self.estimate[s] * self._ratio(kind(s), done) for s in left)
        self.log(f"[eta] {elapsed}, about {remaining:.0f} s left")

    def _ratio(self, of: str | None, done: list[str]) -> float:
        """Measured over estimated seconds of the stages of kind ``of`` that ran (1 when
        none did, or for a stage of no kind)."""
        ran = [s for s in done if kind(s) == of and s not in self.st.skipped]
        guess = sum(self.estimate.get(s, 0.0) for s in ran)
        if of is None or guess <= 0:
            return 1.0
        return sum(self.st.timings[s] for s in ran) / guess

    def finish(self) -> None:
        if self.stage_done in self.st.on_done:
            self.st.on_done.remove(self.stage_done)


# --------------------------------------------------------------------------- estimate


def _fake_store(cfg: Any, blocks: list[str], dims: list[int], layers: list[str],
                examples: dict[str, int], classes: int) -> Any:
    """Random features of the real shape: what the search's cost depends on."""
    from illustration_tl.features import multilayer as features

    rng = np.random.default_rng(0)
    views = list(features.VIEWS if cfg.flip else features.VIEWS[:1])
    arrays, labels, names = {}, {}, {}
    for split in SPLITS:
        n = max(classes * cfg.folds, int(examples.get(split, 0))) if split != "test" else 1
        labels[split] = np.arange(n) % classes
        names[split] = [f"{i}.png" for i in range(n)]
        arrays[split] = {features.key(m, v, b): rng.random((n, d)).astype(np.float32)
                         for m in cfg.resize_modes for v in views for b, d in zip(blocks, dims)}
    return features.FeatureStore(arrays, labels, names, [f"c{i}" for i in range(classes)],
                                 blocks, list(cfg.resize_modes), views, {"layers": layers})


def probe(cfg: Any, include_top: str, classes: int = 4,
          examples: dict[str, int] | None = None) -> dict[str, Any]:
    """Times the backbone (random weights: the same arithmetic as ImageNet's) on a few
    images and a few CV fits on random features of the real width: seconds per image
    and view, seconds per fit, and the number of configurations the search lists."""
    import keras

    from illustration_tl.features import multilayer as features
    from illustration_tl.heads import search

    weights = None if cfg.weights in (None, "", "none", "imagenet") else cfg.weights
    model, blocks, source = features.extractor(cfg.backbone, weights, cfg.image_size,
                                               cfg.layers or None, cfg.seed,
                                               cfg.hub_config or None, include_top)
    x = keras.ops.zeros((PROBE_IMAGES, source.image_size, source.image_size, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's input-structure notice
        outs = model([x], training=False)  # warm-up (graph building)
        start = time.perf_counter()
        model([x], training=False)
    per_image = (time.perf_counter() - start) / PROBE_IMAGES
    dims = [int(o.shape[-1]) for o in outs]
    keras.backend.clear_session()
    store = _fake_store(cfg, blocks, dims, features.layers_of(blocks),
                        examples or {"train": 16, "validation": 4}, classes)
    cands = search.candidates(cfg.search, store)
    start = time.perf_counter()
    search.run(store, cfg.search, folds=cfg.folds, seed=cfg.seed, n_jobs=cfg.n_jobs,
               configs=cands[:2])
    per_fit = (time.perf_counter() - start) / (2 * cfg.folds)
    return {"seconds_per_image": per_image, "seconds_per_fit": per_fit,
            "configurations": len(cands), "image_size": source.image_size}


def passes(cfg: Any, examples: dict[str, int]) -> int:
    """Forward passes of the backbone: every image and view in each resize mode, or in
    the one the ``modes`` stage chose (:func:`fit_modes.passes`)."""
    return fit_modes.passes(cfg.resize_modes, cfg.mode_sample, examples,
                            2 if cfg.flip else 1)


def kind(stage: str) -> str | None:
    """The kind of a stage (:data:`KIND`; every ``features_<size>`` is ``features``)."""
    return "features" if stage.startswith("features_") else KIND.get(stage)


def scale_passes(cfg: Any, examples: dict[str, int], main_size: int) -> dict[int, int]:
    """``--scales``: each extra size's forward passes: every image and view in the modes
    ``features`` embeds."""
    views = 2 if cfg.flip else 1
    modes = 1 if fit_modes.applies(cfg.resize_modes, cfg.mode_sample,
                                   examples.get(fit_modes.SAMPLE_SPLIT, 0)) \
        else len(cfg.resize_modes)
    return {s: sum(examples.values()) * modes * views
            for s in fit_scales.extra_sizes(cfg.scales, main_size)}


def estimate(cfg: Any, include_top: str, examples: dict[str, int],
             measured: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage of the run, in order (an upper bound for the searches: every
    configuration on every fold, where successive halving drops some)."""
    fit, per_pass = measured["seconds_per_fit"], measured["seconds_per_image"]
    search = fit * measured["configurations"] * cfg.folds
    est = {"dataset": DECODE_SECONDS * sum(examples.values())}
    total = passes(cfg, examples)
    if fit_modes.applies(cfg.resize_modes, cfg.mode_sample,
                         examples.get(fit_modes.SAMPLE_SPLIT, 0)):
        sample = (2 if cfg.flip else 1) * cfg.mode_sample * len(cfg.resize_modes)
        share = cfg.mode_sample / sum(examples.get(s, 0) for s in SPLITS[:2])
        est["modes"], total = per_pass * sample + search * share, total - sample
        search /= len(cfg.resize_modes)   # the full search sees the chosen mode only
    est["features"] = per_pass * total
    main = measured["image_size"]   # a pass costs as many times more as it has pixels
    extra = scale_passes(cfg, examples, main)
    est.update({fit_scales.stage_name(s): per_pass * n * (s / main) ** 2
                for s, n in extra.items()})
    est["search"] = search
    if extra:
        est["scales"] = fit * cfg.folds * len(extra)
    est.update({"final": fit * cfg.folds * (1 + len(extra)), "reject": 0.0, "evaluate": 1.0,
                "model": EXPORT_SECONDS})
    return est


def dry_run(cfg: Any, log: Callable[[str], None], include_top: str) -> dict[str, Any]:
    """The plan of a ``fit`` run and its estimated time; writes nothing."""
    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b

    plan = b.curated_plan(cfg.images)
    examples = plan["examples"]
    if len(plan["classes"]) < 2:
        from illustration_tl.errors import UserError

        raise UserError(f"--images={cfg.images!r}: {len(plan['classes'])} class folder(s) "
                        "with files; a classifier needs at least 2")
    measured = probe(cfg, include_top, len(plan["classes"]), examples)
    est = estimate(cfg, include_top, examples, measured)
    lines = [f"dry run: nothing written to {cfg.output}",
             f"classes: {len(plan['classes'])} ({plan['layout']} layout): "
             + ", ".join(f"{c} {n}" for c, n in list(plan["images_per_class"].items())[:10])
             + (" ..." if len(plan["classes"]) > 10 else ""),
             "images per split (about): " + ", ".join(f"{k} {v}" for k, v in examples.items())
             + f"; {plan['files']} files to decode, {len(plan['skipped'])} left out before "
             "decoding" + (f" (e.g. {plan['skipped'][0][0]}: {plan['skipped'][0][1]})"
                           if plan["skipped"] else ""),
             f"forward passes: {passes(cfg, examples)} ({cfg.backbone} at "
             f"{measured['image_size']} px, {len(cfg.resize_modes)} resize mode(s) x "
             f"{2 if cfg.flip else 1} view(s)"
             + (f"; the mode decided on {cfg.mode_sample} training images first"
                if "modes" in est else "") + ")"
             + "".join(f", and {n} at {s} px" for s, n in scale_passes(
                 cfg, examples, measured["image_size"]).items()),
             f"configurations to search: {measured['configurations']} ({cfg.search}, "
             f"{cfg.folds} folds; successive halving fits fewer)",
             "estimated time on this machine: about " + f"{sum(est.values()):.0f} s ("
             + ", ".join(f"{k} {v:.0f} s" for k, v in est.items()) + "; search at most)"]
    for line in lines:
        log(line)
    return {"status": "dry_run", "classes": plan["classes"], "examples": examples,
            "passes": passes(cfg, examples) + sum(scale_passes(
                cfg, examples, measured["image_size"]).values()),
            "configurations": measured["configurations"],
            "estimate_seconds": est, "lines": lines}
