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

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.evaluation.report import ReportConfig

# One flag per field of ReportConfig: names, defaults and help live there.
FLAGS = config_flags.define(ReportConfig)


def config() -> ReportConfig:
    """The :class:`report.ReportConfig` the flags describe."""
    return ReportConfig(**config_flags.values(FLAGS, ReportConfig))


def main(argv) -> int:
    from illustration_tl.errors import UserError
    from illustration_tl.evaluation import report

    cfg = config()
    if not cfg.results or not cfg.output:
        raise UserError("--results and --output are required")
    options = cfg.options()
    results = report.load_results(cfg.results)
    loader = report.image_loader(results, images_root=cfg.images_root, dataset=cfg.dataset,
                                 split=cfg.split, data_dir=cfg.data_dir)
    doc = report.write_report(results, cfg.output, load_image=loader,
                              tsne=report.tsne_inputs(results, cfg.embeddings),
                              options=options, log=print)
    print(report.markdown_table3(doc["table3"]))
    for note in doc["notes"]:
        print(f"note: {note}")
    print(f"wrote {cfg.output}/report.md")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
