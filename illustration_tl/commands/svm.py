"""``illustration-tl svm --embeddings=DIR --output=DIR`` (paper §6.1, §7.2: CNN + SVM).

Trains an SVM on the train (+ validation) embeddings written by ``embed`` and
scores it on the test embeddings (top-1/top-5 from the decision scores).

By default it runs the paper's 3-fold grid search: kernels rbf, poly, sigmoid,
linear; gamma 1e-3, 1e-4; C 1, 10, 100, 1000; one-vs-rest and one-vs-one
(64 points, in parallel). Every list flag is a grid dimension; give single
values to fit fixed parameters without a search, e.g. the paper's presets:

  illustration-tl svm --preset=svm_baseline --embeddings=... --output=...
  illustration-tl svm --preset=svm_optimized --embeddings=... --output=...

--multiclass: ``ovr`` is true one-vs-rest, ``OneVsRestClassifier(SVC)``, one
binary SVM per class. ``ovo`` is scikit-learn's ``SVC``, which always trains
one-vs-one (its ``decision_function_shape='ovr'`` only reshapes the pairwise
votes into per-class scores); the paper used scikit-learn, so its SVMs were
one-vs-one whatever it set.

--scaling (none, standard, l2) is searched like the other parameters; search
gamma with it: gamma=1e-4 suits raw fc2 activations, not normalized ones.
For very many embeddings (the noisy set) use ``--approximation=nystroem``.

Writes the winner refitted as ``fit``'s head, ``head.npz`` (plain arrays, no
pickle) + ``head.json``, ``svm.json`` (parameters, CV scores, class names,
embedding metadata) and the evaluation result (``eval.json``, ``scores.npz``)
for ``report``. An ``svm`` folder of an earlier version (``svm.npz``) is still
read, by ``export`` and the rest, as the same head. Any number of classes
from 2 up; top-5 is reported as n/a with 5 classes or fewer.

--output must be a new or empty folder; with --overwrite it may be an earlier
``svm`` output holding nothing else, which is replaced once the new one is
complete. Folders with other files are always refused.
"""

from __future__ import annotations

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.heads.svm import SvmConfig

# One flag per field of SvmConfig: names, defaults and help live there.
FLAGS = config_flags.define(SvmConfig)


def config() -> SvmConfig:
    """The :class:`svm.SvmConfig` the flags describe."""
    return SvmConfig(**config_flags.values(FLAGS, SvmConfig))


def main(argv) -> int:
    from illustration_tl.core import outputs
    from illustration_tl.errors import UserError
    from illustration_tl.heads import svm

    cfg = config()
    if not cfg.embeddings or not cfg.output:
        raise UserError("--embeddings and --output are required")
    outputs.prepare_output(cfg.output, overwrite=cfg.overwrite, marker=svm.OUTPUT_MARKER)
    candidates = cfg.candidates()
    what = (f"{len(candidates)}-point {cfg.cv_folds}-fold grid search" if len(candidates) > 1
            else f"fixed parameters {candidates[0].label()}")
    print(f"svm: {what}")
    result = svm.train_and_evaluate(
        cfg.embeddings, cfg.output, candidates, train_splits=cfg.train_splits,
        test_split=cfg.test_split, model_name=cfg.name, folds=cfg.cv_folds,
        n_jobs=cfg.n_jobs, seed=cfg.seed, precompute=cfg.precompute(), log=svm.stderr_log,
        overwrite=cfg.overwrite)
    params = result.extra["svm_params"]
    cv = result.extra["cv_top1"]
    print(f"{result.model_name}: {svm.SvmParams(**params).label()}"
          + (f", CV top-1 {100 * cv:.2f}%" if cv is not None else ""))
    print(f"test ({result.num_examples} images): top-1 {100 * result.top_k(1):.2f}%, "
          f"{result.top_k_text(5)}")
    print(f"wrote {cfg.output}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
