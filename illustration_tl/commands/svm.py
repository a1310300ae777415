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

Writes ``svm.npz`` (the fitted SVM as plain arrays, no pickle), ``svm.json``
(parameters, CV scores, class names, embedding metadata) and the evaluation
result (``eval.json``, ``scores.npz``) for ``report``. Any number of classes
from 2 up; top-5 is reported as n/a with 5 classes or fewer.

--output must be a new or empty folder; with --overwrite it may be an earlier
``svm`` output holding nothing else, which is replaced once the new one is
complete. Folders with other files are always refused.
"""

from __future__ import annotations

from absl import flags

from illustration_tl.commands import app

_EMBEDDINGS = flags.DEFINE_string("embeddings", None, "Output folder of `illustration-tl "
                                  "embed` (one subfolder per split).")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the fitted SVM and its test scores.")
_TRAIN_SPLITS = flags.DEFINE_list("train_splits", ["train", "validation"],
                                  "Embedding splits to train on (concatenated).")
_TEST_SPLIT = flags.DEFINE_string("test_split", "test", "Embedding split to evaluate on.")
_KERNEL = flags.DEFINE_list("kernel", ["rbf", "poly", "sigmoid", "linear"],
                            "SVM kernels to try (paper grid: all four).")
_GAMMA = flags.DEFINE_list("gamma", ["1e-3", "1e-4"], "Kernel coefficients to try.")
_C = flags.DEFINE_list("C", ["1", "10", "100", "1000"], "Penalties to try.")
_MULTICLASS = flags.DEFINE_list("multiclass", ["ovr", "ovo"], "Multi-class strategies to try: "
                                "ovr (true one-vs-rest) and/or ovo (sklearn SVC).")
_SCALING = flags.DEFINE_list("scaling", ["none"], "Feature scalings to try: none, standard "
                             "(zero mean, unit variance), l2 (unit-length rows).")
_DEGREE = flags.DEFINE_integer("degree", 3, "Degree of the poly kernel.")
_COEF0 = flags.DEFINE_float("coef0", 0.0, "Independent term of the poly and sigmoid kernels.")
_APPROXIMATION = flags.DEFINE_enum(
    "approximation", "none", ["none", "nystroem"], "nystroem: approximate the kernel with "
    "Nystroem features and train linear SVMs (for sets too large for a kernel SVM).")
_COMPONENTS = flags.DEFINE_integer("nystroem_components", 1024, "Nystroem features.")
_MAX_ITER = flags.DEFINE_integer("max_iter", -1, "libsvm iteration cap per SVM (-1: until "
                                 "converged, as sklearn).")
_FOLDS = flags.DEFINE_integer("cv_folds", 3, "Cross-validation folds of the grid search.")
_N_JOBS = flags.DEFINE_integer("n_jobs", -1, "Grid-search worker processes (-1: all cores).")
_PRECOMPUTE = flags.DEFINE_enum(
    "precompute_kernels", "auto", ["auto", "yes", "no"], "Compute each fold's kernel matrix "
    "once and share it between C values and strategies (auto: up to 12,000 training rows).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the CV folds and Nystroem sampling.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --output if it holds an earlier "
                               "`svm` output (and nothing else), once the new one is complete.")
_NAME = flags.DEFINE_string("name", None, "Model name in reports (default from the embeddings, "
                            "e.g. 'vgg19 fc2 + SVM').")


def main(argv) -> int:
    from illustration_tl import outputs, svm
    from illustration_tl.errors import UserError

    if not _EMBEDDINGS.value or not _OUTPUT.value:
        raise UserError("--embeddings and --output are required")
    outputs.prepare_output(_OUTPUT.value, overwrite=_OVERWRITE.value, marker=svm.OUTPUT_MARKER)
    candidates = svm.grid(
        kernels=_KERNEL.value, gammas=svm.parse_floats(_GAMMA.value, "gamma"),
        Cs=svm.parse_floats(_C.value, "C"), multiclass=_MULTICLASS.value,
        scalings=_SCALING.value, degree=_DEGREE.value, coef0=_COEF0.value,
        approximation=_APPROXIMATION.value, nystroem_components=_COMPONENTS.value,
        max_iter=_MAX_ITER.value)
    precompute = {"auto": None, "yes": True, "no": False}[_PRECOMPUTE.value]
    what = (f"{len(candidates)}-point {_FOLDS.value}-fold grid search" if len(candidates) > 1
            else f"fixed parameters {candidates[0].label()}")
    print(f"svm: {what}")
    result = svm.train_and_evaluate(
        _EMBEDDINGS.value, _OUTPUT.value, candidates, train_splits=_TRAIN_SPLITS.value,
        test_split=_TEST_SPLIT.value, model_name=_NAME.value, folds=_FOLDS.value,
        n_jobs=_N_JOBS.value, seed=_SEED.value, precompute=precompute, log=svm.stderr_log,
        overwrite=_OVERWRITE.value)
    params = result.extra["svm_params"]
    cv = result.extra["cv_top1"]
    print(f"{result.model_name}: {svm.SvmParams(**params).label()}"
          + (f", CV top-1 {100 * cv:.2f}%" if cv is not None else ""))
    print(f"test ({result.num_examples} images): top-1 {100 * result.top_k(1):.2f}%, "
          f"{result.top_k_text(5)}")
    print(f"wrote {_OUTPUT.value}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
