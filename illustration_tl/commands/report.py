"""``illustration-tl report --results=DIR,DIR,... --output=DIR`` (paper §7 tables, figures).

Writes one folder with the paper's tables and figures for the given
evaluation results (outputs of ``baseline``, ``svm`` and ``optimize``):

* ``report.md`` / ``report.json``: Table 3 (global top-1/top-5 per model) and
  Table 4 (per-class top-1/top-5, the models side by side);
* ``confusion-<model>.png``: confusion matrices;
* ``tsne-<name>.png``: t-SNE of the test embeddings (Figure 6);
* ``failures-<model>.png``: the most confident failures (Figure 8);
* ``compare-<a>-vs-<b>.png``: top predictions of two models on the same
  images (Figures 1 and 7).

Images for the grids come from ``--images_root`` or the TFDS split the
results were scored on; t-SNE maps the embeddings the SVM results were tested
on, or ``--embeddings``.
"""

from __future__ import annotations

from absl import flags

from illustration_tl.commands import app

_RESULTS = flags.DEFINE_list("results", None, "Evaluation result folders (eval.json); a "
                             "baseline output folder adds both of its results.")
_OUTPUT = flags.DEFINE_string("output", None, "Report folder (replaced if it holds a report).")
_EMBEDDINGS = flags.DEFINE_list("embeddings", [], "Embedding split folders to map with t-SNE, "
                                "as DIR/SPLIT or DIR:SPLIT (default: the SVM results' test "
                                "embeddings).")
_IMAGES_ROOT = flags.DEFINE_string("images_root", None, "Folder the results' file names are "
                                   "relative to (default: read the images from the dataset).")
_DATASET = flags.DEFINE_string("dataset", None, "TFDS dataset to read images from (default: "
                               "the one the results were scored on).")
_SPLIT = flags.DEFINE_string("split", None, "Its split (default: the results' test split).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Its TFDS data folder.")
_COMPARE = flags.DEFINE_list("compare", [], "Two model names to compare side by side "
                             "(default: the first two results).")
_NUM_FAILURES = flags.DEFINE_integer("num_failures", 16, "Failures shown per model.")
_NUM_COMPARE = flags.DEFINE_integer("num_compare", 8, "Images in the comparison grid.")
_TOP_K = flags.DEFINE_integer("top_k_shown", 3, "Predictions listed per model in the "
                              "comparison grid.")
_TSNE_MAX = flags.DEFINE_integer("tsne_max_points", 2000, "Embeddings sampled for t-SNE.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of t-SNE and its sampling.")


def main(argv) -> int:
    from illustration_tl import report
    from illustration_tl.errors import UserError

    if not _RESULTS.value or not _OUTPUT.value:
        raise UserError("--results and --output are required")
    if _COMPARE.value and len(_COMPARE.value) != 2:
        raise UserError(f"--compare takes two model names, got {_COMPARE.value}")
    results = report.load_results(_RESULTS.value)
    loader = report.image_loader(results, images_root=_IMAGES_ROOT.value,
                                 dataset=_DATASET.value, split=_SPLIT.value,
                                 data_dir=_DATA_DIR.value)
    options = report.ReportOptions(
        num_failures=_NUM_FAILURES.value, num_compare=_NUM_COMPARE.value,
        compare=tuple(_COMPARE.value) if _COMPARE.value else None,
        top_k_shown=_TOP_K.value, tsne_max_points=_TSNE_MAX.value, seed=_SEED.value)
    doc = report.write_report(results, _OUTPUT.value, load_image=loader,
                              tsne=report.tsne_inputs(results, _EMBEDDINGS.value),
                              options=options, log=print)
    print(report.markdown_table3(doc["table3"]))
    for note in doc["notes"]:
        print(f"note: {note}")
    print(f"wrote {_OUTPUT.value}/report.md")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
