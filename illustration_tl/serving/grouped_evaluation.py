"""Scoring an exported classifier on a folder of images, per class and per group.

The paper reports accuracy per class (Table 4) and shows that the optimized
network still recognizes photographs (Fig. 7); users also want accuracy by
drawing style or source (colour versus line art, one icon set versus another,
paper Fig. 1). :func:`evaluate` scores an export (``illustration-tl export``)
on images given as

* a folder ``DIR/<class>/*``, or grouped ``DIR/<group>/<class>/*`` (any depth:
  the class is the folder holding the file, and ``group_by=N`` names the
  folder level ``N`` from the top, 0 first);
* a CSV manifest with columns ``file`` (relative to the images folder, else to
  the manifest's folder), ``label`` and any others, one of which
  ``group_by`` names (``--group_by=style``).

A label is matched to the model's classes by exact name (``Cat`` and ``cat``
are different classes) or through ImageNet (a wnid or any synonym of the same ImageNet
class, e.g. a ``tabby`` folder for a model whose class is ``n02123045``).
Images without a label (files directly in the folder, an empty ``label``) or
with a label the model does not know are still classified and listed in
``predictions.csv``, but not scored: a folder of photographs of any subject
gives the network's top-5 for each (Fig. 7).

Outputs (a new folder, written with :mod:`illustration_tl.core.outputs`):
``evaluation.json``, ``evaluation.md``, ``predictions.csv``, ``confusion.png``
and ``result/`` (an :class:`~illustration_tl.evaluation.metrics.EvalResult` that
``illustration-tl report`` reads). Top-5 is reported only with more than 5 classes.

With ``reject`` (``--reject``), an image whose top probability is below the threshold
``fit`` stored with the model is answered ``unknown`` (:mod:`illustration_tl.evaluation.reject`):
the summary adds the coverage (the share of scored images answered) and the top-1
accuracy on them, and how many unscored images were answered ``unknown``;
``predictions.csv`` adds an ``answer`` column. Without it the outputs are unchanged.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import sys
from typing import Any, Sequence

import numpy as np

from illustration_tl.core import common_settings, files, outputs
from illustration_tl.core.config_flags import optional, setting
from illustration_tl.datasets import imagenet
from illustration_tl.errors import UserError
from illustration_tl.evaluation import metrics as evaluation
from illustration_tl.evaluation import reject as reject_lib
from illustration_tl.serving.predict import REJECT_HELP

OUTPUT_MARKER = "evaluate"
UNLABELLED = ""


@dataclasses.dataclass
class Item:
    """One image to classify: its path, shown name, label text and group."""

    path: str
    name: str
    label: str = UNLABELLED
    group: str = ""


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _level(group_by: str | None) -> int | None:
    if group_by is None or group_by == "":
        return None
    try:
        level = int(group_by)
    except ValueError:
        raise UserError(f"--group_by={group_by}: without --manifest give a folder level "
                        "(0 = the top folder under --images); column names need --manifest"
                        ) from None
    if level < 0:
        raise UserError(f"--group_by={group_by}: a folder level is 0 or more")
    return level


def items_from_folder(root: str, group_by: str | None = None,
                      skipped: list[tuple[str, str]] | None = None) -> list[Item]:
    """Every regular file under ``root``: the class is its folder, the group the folder
    at level ``group_by`` (files directly in ``root`` are unlabelled). What
    :func:`files.walk` leaves out (symlinks leading out of ``root``, FIFOs, devices,
    sockets; never opened) is appended to ``skipped`` as ``(shown name, reason)``."""
    if not os.path.isdir(root):
        raise UserError(f"--images={root!r} is not a folder")
    level = _level(group_by)
    left_out = skipped if skipped is not None else []
    out = []
    for rel in files.walk(root, on_skip=lambda s: left_out.append(
            (files.display_name(s.rel), s.reason))):
        parts = rel.split("/")
        folders = parts[:-1]
        folders = [files.display_name(f) for f in folders]  # printable on any console
        label = folders[-1] if folders else UNLABELLED
        group = ""
        if level is not None:
            if level >= len(folders) - 1:
                raise UserError(f"--group_by={level}: {files.display_name(rel)} has no folder "
                                f"at level {level} above its class folder; use "
                                "<group>/<class>/<file> or a lower level")
            group = folders[level]
        out.append(Item(os.path.join(root, *parts), files.display_name(rel), label, group))
    if not out:
        raise UserError(f"--images={root!r} holds no files")
    return out


MAX_MANIFEST_BYTES = 256 * 1024 * 1024
MAX_FIELD_CHARS = 128 * 1024
"""Longest manifest cell (csv's own default limit): a longer one is a one-line error."""


def _manifest_rows(manifest: str) -> csv.DictReader:
    """The manifest's rows; UserError for a file that is not UTF-8 CSV text."""
    try:
        data = files.read_regular_file(manifest, MAX_MANIFEST_BYTES)
    except files.UnreadableFile as e:
        raise UserError(f"--manifest={manifest!r}: {e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"--manifest={manifest!r}: line {line} is not UTF-8 text (a Latin-1 "
                        "or other legacy encoding?); save the CSV as UTF-8") from None
    return csv.DictReader(io.StringIO(text, newline=""))


def _manifest_path(root: str, name: str) -> tuple[str | None, str]:
    """The path a manifest's ``file`` names under ``root``, or None and why it is refused:
    absolute paths, ``..`` and links leading out of ``root`` are never opened."""
    parts = name.replace("\\", "/").split("/")
    if os.path.isabs(name) or name.startswith("\\") or (len(name) > 1 and name[1] == ":"):
        return None, "absolute path; manifest paths are relative to the images folder"
    if ".." in parts:
        return None, "`..` in the path; manifest paths stay inside the images folder"
    path = os.path.join(root, *[p for p in parts if p not in ("", ".")])
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return None, "symlink to a path outside the images folder; not followed"
    return path, ""


def items_from_manifest(manifest: str, images: str | None = None,
                        group_by: str | None = None,
                        skipped: list[tuple[str, str]] | None = None) -> list[Item]:
    """Rows of a UTF-8 CSV with ``file`` and ``label`` columns (and ``group_by``).

    ``file`` is relative to ``images`` (else to the manifest's folder); absolute
    paths, ``..`` and symlinks leading out are appended to ``skipped`` as
    ``(file, reason)`` and never opened. A file that is not UTF-8, or a cell over
    :data:`MAX_FIELD_CHARS` characters, is a one-line :class:`UserError`."""
    if not os.path.isfile(manifest):
        raise UserError(f"--manifest={manifest!r} is not a file")
    root = images or os.path.dirname(os.path.abspath(manifest))
    if images and not os.path.isdir(images):
        raise UserError(f"--images={images!r} is not a folder")
    left_out = skipped if skipped is not None else []
    reader = _manifest_rows(manifest)
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        columns = reader.fieldnames or []
        for needed in ("file", "label"):
            if needed not in columns:
                raise UserError(f"--manifest={manifest}: no `{needed}` column (has "
                                f"{', '.join(columns) or 'none'}); the header needs file,label")
        if group_by and group_by not in columns:
            raise UserError(f"--group_by={group_by}: not a column of {manifest} (columns: "
                            f"{', '.join(columns)})")
        out = []
        for i, row in enumerate(reader, start=2):
            name = (row.get("file") or "").strip()
            if not name:
                raise UserError(f"--manifest={manifest}: line {i} has an empty `file`")
            path, why = _manifest_path(root, name)
            if path is None:
                left_out.append((files.display_name(name), why))
                continue
            out.append(Item(path, files.display_name(name), (row.get("label") or "").strip(),
                            (row.get(group_by) or "").strip() if group_by else ""))
    except csv.Error as e:
        raise UserError(f"--manifest={manifest}: line {reader.line_num}: not readable CSV "
                        f"({e}); cells hold at most {MAX_FIELD_CHARS:,} characters") from None
    finally:
        csv.field_size_limit(limit)
    if not out and not left_out:
        raise UserError(f"--manifest={manifest} lists no files")
    return out


def _key(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def label_matcher(class_names: Sequence[str], wnids: Sequence[str] | None = None):
    """A function from a label text to a model class index (or None).

    A label matches the class of exactly its name (``Cat`` and ``cat`` are two
    classes; no case or ``_``/space folding, which merged classes and gave wrong
    numbers). A label that names no class exactly may still match through ImageNet
    (a wnid, or any synonym of the same ImageNet class: a ``tabby`` folder for a
    model whose class is ``n02123045``), unless it differs from a model class only
    by case, ``_`` or spaces: such a label is not scored (reported as unknown)."""
    by_name = {c: i for i, c in enumerate(class_names)}
    folded = {_key(c) for c in class_names}
    by_wnid: dict[str, int] = {}
    for i, c in enumerate(class_names):
        wnid = (wnids[i] if wnids and i < len(wnids) else "") or ""
        found = imagenet.by_wnid(wnid) if wnid in {x.wnid for x in imagenet.classes()} \
            else imagenet.find(c)
        if found is not None:
            by_wnid.setdefault(found.wnid, i)

    def match(label: str) -> int | None:
        if not label:
            return None
        if label in by_name:
            return by_name[label]
        if _key(label) in folded:
            return None
        found = imagenet.find(label.strip())
        return by_wnid.get(found.wnid) if found is not None else None

    return match


def _group_rows(result: evaluation.EvalResult, groups: Sequence[str]) -> list[dict[str, Any]]:
    ranks = evaluation.true_class_rank(result.scores, result.labels)
    top5 = evaluation.top_k_applicable(5, len(result.class_names))
    rows = []
    groups_arr = np.asarray(groups, dtype=object)
    for g in sorted(set(groups)):
        mask = groups_arr == g
        rows.append({"group": g, "n": int(mask.sum()),
                     "top1": float(np.mean(ranks[mask] < 1)),
                     "top5": float(np.mean(ranks[mask] < 5)) if top5 else None,
                     "classes": int(len(np.unique(result.labels[mask])))})
    return rows


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def markdown(doc: dict[str, Any]) -> str:
    o = doc["overall"]
    lines = [f"# Evaluation of {doc['model']}", "",
             f"- images: {doc['images']} ({doc['scored']} scored, {doc['unscored']} not scored: "
             f"no label or a label the model does not know; {doc['skipped']} skipped: "
             "not decodable, or not a regular file inside the input)",
             f"- classes in the model: {doc['model_classes']}"]
    if o:
        lines += [f"- top-1 {_pct(o['top1'])}, top-5 {_pct(o['top5'])}"]
    r = doc.get("reject")
    if r:
        lines.append(
            f"- reject (`unknown` below a top probability of {r['threshold']:.3f}): "
            f"{r['accepted']} of {r['scored']} scored images answered (coverage "
            f"{_pct(r['coverage'])}), top-1 on them {_pct(r['accuracy'])}; "
            f"{r['unscored_rejected']} of {r['unscored']} unscored images `unknown`")
    if o:
        lines.append("")
    if doc["per_group"]:
        lines += [f"## Per group ({doc['group_by']})", "", "| group | n | top-1 | top-5 |",
                  "|---|---|---|---|"]
        lines += [f"| {r['group']} | {r['n']} | {_pct(r['top1'])} | {_pct(r['top5'])} |"
                  for r in doc["per_group"]]
        lines.append("")
    if doc["per_class"]:
        lines += ["## Per class", "", "| class | n | top-1 | top-5 |", "|---|---|---|---|"]
        lines += [f"| {r['class']} | {r['n']} | {_pct(r['top1'])} | {_pct(r['top5'])} |"
                  for r in doc["per_class"]]
        lines.append("")
    if doc["unscored_examples"]:
        lines += ["## Not scored (top predictions)", "", "| file | label | top predictions |",
                  "|---|---|---|"]
        lines += [f"| {r['file']} | {r['label'] or '-'} | {r['top']} |"
                  for r in doc["unscored_examples"]]
        lines.append("")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class EvaluateConfig:
    """The ``evaluate`` command's settings, one ``illustration-tl evaluate`` flag each
    (:mod:`config_flags`); the arguments of :func:`evaluate`."""

    model: str | None = common_settings.export_dir()
    images: str | None = optional("Folder of <class>/* or <group>/<class>/* images (with "
                                  "--manifest: the folder its `file` paths are relative to).")
    manifest: str | None = optional("CSV with columns file,label and any group columns.")
    group_by: str | None = optional("Group results by a folder level (0 = top folder under "
                                    "--images) or, with --manifest, a column name.")
    output: str | None = optional("New folder for the results.")
    overwrite: bool = setting(False, "Replace an earlier evaluate output (only if it holds "
                              "nothing else).")
    batch_size: int = common_settings.batch_size()
    max_side: int = setting(512, "Downscale before resizing, as the dataset builder does "
                            "(keep equal to the builder's max_side).")
    reject: bool = setting(False, REJECT_HELP)


def evaluate(*, model: str, output: str, images: str | None = None,
             manifest: str | None = None, group_by: str | None = None,
             batch_size: int = 32, max_side: int | None = 512, top_k: int = 5,
             overwrite: bool = False, reject: bool = False) -> dict[str, Any]:
    """Scores the export ``model`` on ``images`` (folder) or ``manifest`` (CSV); writes
    ``output`` and returns the summary (see module doc; ``reject``: ``--reject``)."""

    from illustration_tl.datasets import ingestion
    from illustration_tl.evaluation import report
    from illustration_tl.serving import predict

    if not images and not manifest:
        raise UserError("--images (a folder) or --manifest (a CSV) is required")
    if batch_size < 1:
        raise UserError(f"--batch_size={batch_size}: at least 1")
    if max_side is not None and max_side < 1:
        raise UserError(f"--max_side={max_side}: give a positive number of pixels")
    outputs.prepare_output(output, overwrite=overwrite, marker=OUTPUT_MARKER)
    skipped: list[tuple[str, str]] = []  # (shown name, reason): listed, never scored
    items = (items_from_manifest(manifest, images, group_by, skipped) if manifest
             else items_from_folder(images, group_by, skipped))
    left_out = len(skipped)  # never opened: links out, FIFOs, paths out of the root
    predictor = predict.Predictor(model)
    threshold = predictor.reject_threshold() if reject else None
    match = label_matcher(predictor.class_names, predictor.metadata.get("wnids"))
    progress_every = max(1, 10 * batch_size)
    kept: list[Item] = []
    scores: list[np.ndarray] = []
    batch: list[tuple[Item, Any]] = []

    def flush() -> None:
        if batch:
            out = predictor.classify_pixels(predictor.stack([px for _, px in batch]))
            scores.append(np.asarray(out["all_scores"], np.float64))
            kept.extend(item for item, _ in batch)
            batch.clear()

    for n, item in enumerate(items, start=1):
        try:
            batch.append((item, predictor.prepare(item.path, max_side)))
        except ingestion.IngestionError as e:  # only regular files are opened
            skipped.append((item.name, predict.safe_reason(str(e))))
        if len(batch) >= batch_size:
            flush()
        if n % progress_every == 0:
            _say(f"evaluate: {n:,}/{len(items):,} images")
    flush()
    all_scores = (np.concatenate(scores) if scores
                  else np.zeros((0, predictor.num_classes)))
    labels = [match(item.label) for item in kept]
    scored = [i for i, lab in enumerate(labels) if lab is not None]
    names = predictor.class_names
    result = None
    if scored:
        result = evaluation.EvalResult(
            f"{os.path.basename(os.path.normpath(model))} export", names,
            np.asarray([labels[i] for i in scored]), all_scores[scored],
            [kept[i].name for i in scored],
            {"stage": "evaluate", "model": os.path.abspath(model),
             "images": os.path.abspath(images) if images else None,
             "manifest": os.path.abspath(manifest) if manifest else None, "group_by": group_by})
    k = min(top_k, len(names))
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
    unscored = [i for i, lab in enumerate(labels) if lab is None]
    doc = {
        "model": files.display_name(os.path.abspath(model)), "model_classes": len(names),
        "images": len(items) + left_out, "scored": len(scored), "unscored": len(unscored),
        "skipped": len(skipped), "skipped_files": [{"file": f, "reason": r}
                                                   for f, r in skipped],
        "group_by": group_by,
        "overall": None if result is None else {
            "n": result.num_examples, "top1": result.top_k(1), "top5": result.top_k_or_none(5)},
        "per_class": [] if result is None else result.per_class(),
        "per_group": [] if result is None or group_by in (None, "") else _group_rows(
            result, [kept[i].group for i in scored]),
        "unknown_labels": sorted({kept[i].label for i in unscored if kept[i].label}),
        "unscored_examples": [
            {"file": kept[i].name, "label": kept[i].label,
             "top": ", ".join(f"{names[j]} {all_scores[i, j]:.3f}" for j in order[i])}
            for i in unscored[:200]],
    }
    keep = None
    if threshold is not None:
        keep = reject_lib.accepted(all_scores, threshold.threshold)
        doc["reject"] = _reject_summary(threshold, keep, labels, order)
    with outputs.writing(output, overwrite=overwrite, marker=OUTPUT_MARKER) as tmp:
        with open(os.path.join(tmp, "predictions.csv"), "w", newline="",
                  encoding="utf-8") as f:
            w = _SafeWriter(csv.writer(f))
            w.writerow(["file", "label", "group", "scored", "top1_correct"]
                       + [f"top{j + 1}" for j in range(k)]
                       + [f"top{j + 1}_score" for j in range(k)]
                       + ([] if keep is None else ["answer"]))
            for i, item in enumerate(kept):
                lab = labels[i]
                w.writerow([item.name, item.label, item.group, lab is not None,
                            "" if lab is None else bool(order[i, 0] == lab)]
                           + [names[j] for j in order[i]]
                           + [f"{all_scores[i, j]:.6g}" for j in order[i]]
                           + ([] if keep is None else
                              [names[order[i, 0]] if keep[i] else reject_lib.UNKNOWN]))
            for name, reason in skipped:
                w.writerow([name, "", "", False, f"skipped: {reason}"])
        if result is not None:
            result.save(os.path.join(tmp, "result"))
            report.plot_confusion(result, os.path.join(tmp, "confusion.png"))
        files.atomic_write_json(os.path.join(tmp, "evaluation.json"), doc)
        with open(os.path.join(tmp, "evaluation.md"), "w", encoding="utf-8") as f:
            f.write(markdown(doc))
    return doc


def _reject_summary(threshold: reject_lib.RejectThreshold, keep: np.ndarray,
                    labels: Sequence[int | None], order: np.ndarray) -> dict[str, Any]:
    """``evaluate --reject``'s numbers: the threshold, then over the scored images the
    coverage (share answered) and the top-1 accuracy on the answered ones, and how many
    unscored images (no label the model knows) were answered ``unknown``."""
    scored = [i for i, lab in enumerate(labels) if lab is not None]
    unscored = [i for i, lab in enumerate(labels) if lab is None]
    answered = [i for i in scored if keep[i]]
    right = sum(int(order[i, 0] == labels[i]) for i in answered)
    return {"threshold": threshold.threshold, "target": threshold.target,
            "scored": len(scored), "accepted": len(answered),
            "coverage": len(answered) / len(scored) if scored else None,
            "accuracy": right / len(answered) if answered else None,
            "unscored": len(unscored),
            "unscored_rejected": sum(int(not keep[i]) for i in unscored)}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""A CSV cell starting with one of these is a formula to a spreadsheet (OWASP)."""


def csv_cell(value: Any) -> Any:
    """``value`` safe for a spreadsheet: a text starting with :data:`FORMULA_STARTS` gets
    a leading ``'`` (so ``=HYPERLINK(...)`` is shown, not run); numbers such as
    ``-0.25`` are kept."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        try:
            float(value)  # a number such as -0.25 stays a number
        except ValueError:
            return "'" + value
    return value


class _SafeWriter:
    """A ``csv.writer`` whose every cell goes through :func:`csv_cell`."""

    def __init__(self, writer: Any):
        self._writer = writer

    def writerow(self, row: Sequence[Any]) -> None:
        self._writer.writerow([csv_cell(v) for v in row])


def counts_by_group(doc: dict[str, Any]) -> dict[str, tuple[int, float]]:
    """``{group: (n, top1)}`` from an evaluation summary (for tests and scripts)."""
    return {r["group"]: (r["n"], r["top1"]) for r in doc["per_group"]}

