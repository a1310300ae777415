"""The run report: the paper's tables and figures from saved evaluation results (§7).

From one or more :class:`~illustration_tl.evaluation.metrics.EvalResult` folders it writes,
into one output folder:

* ``report.md`` and ``report.json`` with Table 3 (global top-1/top-5 per model)
  and Table 4 (per-class top-1/top-5, the models side by side);
* ``confusion-<model>.png``: the confusion matrix of each model;
* ``tsne-<name>.png``: t-SNE of test embeddings, coloured by class (Figure 6);
* ``failures-<model>.png``: the most confident wrong predictions (Figure 8);
* ``compare-<a>-vs-<b>.png``: the top predictions of two models on the same
  images (Figures 1 and 7).

Figures are drawn by :mod:`illustration_tl.evaluation.figures` at fixed sizes, recorded
in ``report.json``; its public names stay importable from here (``report.plot_confusion``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Sequence

import numpy as np

from illustration_tl.core import common_settings
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.errors import UserError
from illustration_tl.evaluation.figures import (  # noqa: F401  (report.X for callers)
    DPI,
    TILE_INCHES,
    TSNE_FIGSIZE,
    TSNE_MIN_POINTS,
    ImageLoader,
    TsneInput,
    comparison_figsize,
    comparison_picks,
    confusion_figsize,
    grid_figsize,
    most_confident_failures,
    pct,
    plot_comparison,
    plot_confusion,
    plot_failures,
    plot_tsne,
)
from illustration_tl.evaluation.metrics import EvalResult, atomic_write_json
from illustration_tl.features.embeddings import replace_dir

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclasses.dataclass
class ReportOptions:
    num_failures: int = 16
    num_compare: int = 8
    compare: tuple[str, str] | None = None   # model names; default: the first two
    top_k_shown: int = 3
    tsne_max_points: int = 2000
    grid_columns: int = 4
    seed: int = 0


@dataclasses.dataclass
class ReportConfig:
    """The ``report`` stage's settings, one ``illustration-tl report`` flag each
    (:mod:`config_flags`); :meth:`options` are :func:`write_report`'s."""

    results: tuple[str, ...] | None = setting(
        None, "Evaluation result folders (eval.json); a baseline output folder adds both of "
        "its results.")
    output: str | None = optional("Report folder (replaced if it holds a report).")
    embeddings: tuple[str, ...] = setting(
        (), "Embedding split folders to map with t-SNE, as DIR/SPLIT or DIR:SPLIT (default: "
        "the SVM results' test embeddings).")
    images_root: str | None = optional("Folder the results' file names are relative to "
                                       "(default: read the images from the dataset).")
    dataset: str | None = optional("TFDS dataset to read images from (default: the one the "
                                   "results were scored on).")
    split: str | None = optional("Its split (default: the results' test split).")
    data_dir: str | None = common_settings.data_dir()
    compare: tuple[str, ...] = setting((), "Two model names to compare side by side "
                                       "(default: the first two results).")
    num_failures: int = setting(ReportOptions.num_failures, "Failures shown per model.")
    num_compare: int = setting(ReportOptions.num_compare, "Images in the comparison grid.")
    top_k_shown: int = setting(ReportOptions.top_k_shown, "Predictions listed per model in "
                               "the comparison grid.")
    tsne_max_points: int = setting(ReportOptions.tsne_max_points, "Embeddings sampled for "
                                   "t-SNE.")
    seed: int = setting(ReportOptions.seed, "Seed of t-SNE and its sampling.")

    def options(self) -> ReportOptions:
        """The figure options (``compare``: two model names, or None for the first two)."""
        if self.compare and len(self.compare) != 2:
            raise UserError(f"--compare takes two model names, got {list(self.compare)}")
        return ReportOptions(
            num_failures=self.num_failures, num_compare=self.num_compare,
            compare=tuple(self.compare) if self.compare else None,
            top_k_shown=self.top_k_shown, tsne_max_points=self.tsne_max_points,
            seed=self.seed)


def slug(name: str) -> str:
    """A file-name-safe form of a model name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "model"


# --- Tables ----------------------------------------------------------------------------

def table3(results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    """Table 3: global top-1/top-5 per model."""
    return [r.summary() for r in results]


def table4(results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    """Table 4: per-class top-1/top-5 of every model, aligned by class name."""
    per_model = [{row["class"]: row for row in r.per_class()} for r in results]
    order: list[str] = []
    for rows in per_model:
        order += [c for c in rows if c not in order]
    table = []
    for c in order:
        row: dict[str, Any] = {"class": c}
        for r, rows in zip(results, per_model):
            hit = rows.get(c)
            row[r.model_name] = None if hit is None else {
                "n": hit["n"], "top1": hit["top1"], "top5": hit["top5"]}
        row["n"] = next(v["n"] for k, v in row.items() if isinstance(v, dict))
        table.append(row)
    return table


def markdown_table3(rows: list[dict[str, Any]]) -> str:
    lines = ["| Model | Test images | Top-1 (%) | Top-5 (%) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['model_name']} | {r['num_examples']} | {pct(r['top1'])} | {pct(r['top5'])} |"
              for r in rows]
    return "\n".join(lines)


def markdown_table4(rows: list[dict[str, Any]], models: Sequence[str]) -> str:
    head = "| Class | n | " + " | ".join(f"{m} top-1 | {m} top-5" for m in models) + " |"
    lines = [head, "|---|---:|" + "---:|---:|" * len(models)]
    for r in rows:
        cells = []
        for m in models:
            v = r.get(m)
            cells += ["–", "–"] if v is None else [pct(v["top1"]), pct(v["top5"])]
        lines.append(f"| {r['class']} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- The whole report ------------------------------------------------------------------

def write_report(results: Sequence[EvalResult], output: str, *,
                 load_image: ImageLoader | None = None,
                 tsne: Sequence[TsneInput] = (), options: ReportOptions | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Writes every table and figure into ``output`` (replaced as a whole when done).

    Figures that need images (failures, comparison) are skipped, with a note in
    the report, when ``load_image`` is None or the results lack file names.
    Refuses to replace an existing folder that is not a report.
    """
    options = options or ReportOptions()
    if not results:
        raise UserError("the report needs at least one evaluation result (--results)")
    names = [r.model_name for r in results]
    if len(set(names)) != len(names):
        raise UserError(f"two results share a model name ({names}); rename one (--name)")
    output = os.path.abspath(output)
    if os.path.isdir(output) and os.listdir(output) and \
            not os.path.isfile(os.path.join(output, REPORT_JSON)):
        raise UserError(f"--output={output} exists and is not a report folder; "
                        "choose an empty or new folder")
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(output)}.partial-")
    try:
        doc = _write_all(results, tmp, load_image, tsne, options, log or (lambda _: None))
        replace_dir(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc


def _write_all(results: Sequence[EvalResult], out: str, load_image: ImageLoader | None,
               tsne: Sequence[TsneInput], options: ReportOptions,
               log: Callable[[str], None]) -> dict[str, Any]:
    figures: dict[str, list[dict[str, Any]]] = {"confusion": [], "tsne": [], "failures": [],
                                                "comparison": []}
    notes: list[str] = []
    for r in results:
        log(f"report: confusion matrix of {r.model_name}")
        figures["confusion"].append(dict(plot_confusion(r, os.path.join(
            out, f"confusion-{slug(r.model_name)}.png")), model=r.model_name))
    for t in tsne:
        if len(t.y) < TSNE_MIN_POINTS:  # a tiny test split: the rest of the report stands
            notes.append(f"No t-SNE of {t.name}: {len(t.y)} test embeddings, fewer than "
                         f"{TSNE_MIN_POINTS}.")
            continue
        log(f"report: t-SNE of {t.name}")
        figures["tsne"].append(dict(plot_tsne(t, os.path.join(out, f"tsne-{slug(t.name)}.png"),
                                              options.tsne_max_points, options.seed),
                                    embeddings=t.name))
    if not tsne:
        notes.append("No t-SNE: no test embeddings were given (--embeddings).")
    if load_image is None:
        notes.append("No failure or comparison grids: no images were given "
                     "(--images_root or --dataset).")
    else:
        for r in results:
            if r.file_names is None:
                notes.append(f"No failure grid for {r.model_name}: its result has no file names.")
                continue
            log(f"report: most confident failures of {r.model_name}")
            fig = plot_failures(r, load_image, os.path.join(
                out, f"failures-{slug(r.model_name)}.png"), options.num_failures,
                options.grid_columns)
            if fig is None:
                notes.append(f"No failure grid for {r.model_name}: it made no mistakes.")
            else:
                figures["failures"].append(dict(fig, model=r.model_name))
        pair = _comparison_pair(results, options.compare)
        if pair is None:
            notes.append("No comparison grid: it needs two results.")
        else:
            a, b = pair
            log(f"report: comparing {a.model_name} and {b.model_name}")
            fig = plot_comparison(a, b, load_image, os.path.join(
                out, f"compare-{slug(a.model_name)}-vs-{slug(b.model_name)}.png"),
                options.num_compare, options.top_k_shown)
            figures["comparison"].append(dict(fig, models=[a.model_name, b.model_name]))
    t3, t4 = table3(results), table4(results)
    doc = {"table3": t3, "table4": t4, "figures": figures, "notes": notes,
           "results": [{"model_name": r.model_name, "extra": r.extra} for r in results]}
    atomic_write_json(os.path.join(out, REPORT_JSON), doc)
    with open(os.path.join(out, REPORT_MD), "w", encoding="utf-8") as f:
        f.write(_markdown(t3, t4, [r.model_name for r in results], figures, notes))
    return doc


def _comparison_pair(results: Sequence[EvalResult], names: tuple[str, str] | None
                     ) -> tuple[EvalResult, EvalResult] | None:
    by_name = {r.model_name: r for r in results}
    if names:
        missing = [n for n in names if n not in by_name]
        if missing:
            raise UserError(f"--compare names {missing} are not among the results' model "
                            f"names {list(by_name)}")
        return by_name[names[0]], by_name[names[1]]
    with_files = [r for r in results if r.file_names is not None]
    return (with_files[0], with_files[1]) if len(with_files) >= 2 else None


def _markdown(t3: list[dict[str, Any]], t4: list[dict[str, Any]], models: list[str],
              figures: dict[str, list[dict[str, Any]]], notes: list[str]) -> str:
    parts = ["# Run report", "",
             "## Table 3: global accuracy", "", markdown_table3(t3), "",
             "## Table 4: per-class accuracy", "", markdown_table4(t4, models), ""]
    titles = {"confusion": "Confusion matrices", "tsne": "t-SNE of test embeddings (Figure 6)",
              "failures": "Most confident failures (Figure 8)",
              "comparison": "Top predictions side by side (Figures 1 and 7)"}
    for key, title in titles.items():
        if figures[key]:
            parts += [f"## {title}", ""]
            parts += [f"![{f['file']}]({f['file']})" for f in figures[key]]
            parts.append("")
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(parts)


# --- Where images come from ------------------------------------------------------------

def folder_image_loader(root: str, max_side: int = 256) -> ImageLoader:
    """Loads ``root/<file_name>`` as the dataset builder decodes it (None if missing)."""
    from illustration_tl.datasets import ingestion

    if not os.path.isdir(root):
        raise UserError(f"--images_root={root!r} is not a folder")

    def load(name: str) -> np.ndarray | None:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            return None
        try:
            return ingestion.load_image(path, max_side=max_side)
        except ingestion.IngestionError:
            return None

    return load


def dataset_image_loader(examples: Any, wanted: set[str]) -> ImageLoader:
    """Collects the images of ``wanted`` file names from an iterable of TFDS examples
    (dicts with ``image`` and ``file_name``), in one pass."""
    found: dict[str, np.ndarray] = {}
    for ex in examples:
        name = ex["file_name"]
        name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
        if name in wanted:
            found[name] = np.asarray(ex["image"])
            if len(found) == len(wanted):
                break
    return found.get


# --- Gathering the inputs (used by the report command and reproduce) ---------------------

def load_results(paths: Sequence[str]) -> list[EvalResult]:
    """Loads result folders; a folder holding several results (the baseline's
    ``imagenet1000`` and ``restricted``) contributes each of them."""
    from illustration_tl.evaluation.metrics import EVAL_JSON

    out = []
    for p in paths:
        if os.path.isfile(os.path.join(p, EVAL_JSON)):
            out.append(EvalResult.load(p))
            continue
        subs = sorted(d for d in (os.listdir(p) if os.path.isdir(p) else [])
                      if os.path.isfile(os.path.join(p, d, EVAL_JSON)))
        if not subs:
            raise UserError(f"--results: {p!r} holds no evaluation result (eval.json); pass "
                            "the output folder of baseline, svm or optimize")
        out += [EvalResult.load(os.path.join(p, d)) for d in subs]
    return out


def tsne_inputs(results: Sequence[EvalResult], explicit: Sequence[str] = ()
                ) -> list[TsneInput]:
    """Test embeddings to map: ``explicit`` split folders (``DIR`` or ``DIR:SPLIT``), else
    the test embeddings each SVM result was scored on."""
    from illustration_tl.features import embeddings

    specs: list[tuple[str, str | None, str]] = []
    for e in explicit:
        root, _, split = e.partition(":") if ":" in e and not os.path.exists(e) else (e, "", "")
        specs.append((root, split or None, ""))
    if not explicit:
        for r in results:
            d, split = r.extra.get("embeddings_dir"), r.extra.get("test_split")
            if d and split and os.path.isdir(os.path.join(d, split)):
                specs.append((d, split, r.model_name))
    out, seen = [], set()
    for root, split, model in specs:
        key = os.path.abspath(embeddings.split_dir(root, split))
        if key in seen:
            continue
        seen.add(key)
        e = embeddings.load(root, split)
        meta = e.metadata
        split_name = meta.get("split") or split or "test"
        name = f"{model} ({split_name})" if model else (
            f"{meta.get('backbone', '')} {meta.get('layer', '')} ({split_name})".strip())
        out.append(TsneInput(name, e.x, e.y, e.class_names))
    return out


def image_loader(results: Sequence[EvalResult], *, images_root: str | None = None,
                 dataset: str | None = None, split: str | None = None,
                 data_dir: str | None = None, max_side: int = 256) -> ImageLoader | None:
    """Where the grids get their images: ``images_root`` (file names relative to it),
    else the TFDS split the results were scored on (from the flags or the results)."""
    if images_root:
        return folder_image_loader(images_root, max_side)
    extra = next((r.extra for r in results if r.extra.get("dataset") or
                  (r.extra.get("embeddings") or {}).get("dataset")), {})
    emb = extra.get("embeddings") or {}
    dataset = dataset or extra.get("dataset") or emb.get("dataset")
    split = split or extra.get("test_split")
    data_dir = data_dir or extra.get("data_dir") or emb.get("data_dir")
    if not dataset or not split:
        return None
    wanted = {f for r in results if r.file_names for f in r.file_names}
    from illustration_tl.datasets import input_pipeline

    ds, _ = input_pipeline.load_split(_dataset_name(dataset), split, data_dir)
    found = dataset_image_loader(ds.as_numpy_iterator(), wanted)

    def load(name: str) -> np.ndarray | None:
        image = found(name)
        if image is None or max(image.shape[:2]) <= max_side:
            return image
        from PIL import Image

        pil = Image.fromarray(image)
        pil.thumbnail((max_side, max_side))
        return np.asarray(pil)

    return load


def _dataset_name(full_name: str) -> str:
    """``illustrations/curated/1.0.0`` -> ``illustrations/curated`` (TFDS full names)."""
    parts = full_name.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else full_name
