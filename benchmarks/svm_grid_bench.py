"""Wall time of the paper's SVM grid search (paper §6.1) on fc2-like features.

    python benchmarks/svm_grid_bench.py --num_examples=3300 --dim=4096 --n_jobs=2

The features imitate VGG fc2 activations: a ReLU of a random projection of a
low-dimensional class structure, so they are non-negative, about half zeros,
with squared norms in the thousands (the scale the paper's γ=1e-4 suits).
Prints the wall time of the 64-point, 3-fold grid with the shared kernel
matrices (the default) and, with ``--compare``, the same grid fitted the plain
way (libsvm computing the kernel itself) on the same data in the same process,
as a ratio.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from illustration_tl.heads import svm  # noqa: E402

_N = flags.DEFINE_integer("num_examples", 3300, "Rows (the paper's curated set is ~3,300).")
_DIM = flags.DEFINE_integer("dim", 4096, "Embedding width (VGG fc2: 4096).")
_CLASSES = flags.DEFINE_integer("num_classes", 23, "Classes (the paper's curated set: 23).")
_JOBS = flags.DEFINE_integer("n_jobs", 2, "Parallel grid workers.")
_FOLDS = flags.DEFINE_integer("cv_folds", 3, "Cross-validation folds.")
_COMPARE = flags.DEFINE_bool("compare", False, "Also time the grid without shared kernels.")
_SEED = flags.DEFINE_integer("seed", 0, "Random seed.")
_OUT = flags.DEFINE_string("output", None, "Optional JSON file for the numbers.")


def fc2_like(n: int, dim: int, num_classes: int, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative, sparse, class-structured features shaped like VGG fc2 activations."""
    rng = np.random.default_rng(seed)
    latent = 64
    centers = rng.normal(0.0, 1.0, (num_classes, latent))
    y = rng.integers(0, num_classes, n)
    z = centers[y] + rng.normal(0.0, 1.6, (n, latent))
    w = rng.normal(0.0, 1.0 / np.sqrt(latent), (latent, dim))
    x = np.maximum(z @ w * 1.5 - 0.1, 0.0) * rng.gamma(2.0, 0.5, (n, 1))
    return x.astype(np.float32), y.astype(np.int64)


def time_grid(x: np.ndarray, y: np.ndarray, precompute: bool) -> tuple[float, tuple]:
    """Seconds for the paper grid, and ``(best SvmParams, its CV top-1)``."""
    start = time.perf_counter()
    cands = svm.paper_grid()
    results = svm.cross_validate(x, y, cands, folds=_FOLDS.value, n_jobs=_JOBS.value,
                                 precompute=precompute, log=svm.stderr_log)
    i = svm.select_best(results)
    return time.perf_counter() - start, (cands[i], results[i].top1)


def main(argv) -> None:
    del argv
    x, y = fc2_like(_N.value, _DIM.value, _CLASSES.value, _SEED.value)
    sq = (x.astype(np.float64) ** 2).sum(1)
    print(f"features: {x.shape}, zeros {np.mean(x == 0):.0%}, squared norm median "
          f"{np.median(sq):.0f}")
    numbers = {"num_examples": _N.value, "dim": _DIM.value, "num_classes": _CLASSES.value,
               "n_jobs": _JOBS.value, "grid_points": len(svm.paper_grid())}
    seconds, best = time_grid(x, y, precompute=True)
    numbers.update(shared_kernel_seconds=round(seconds, 1), best=best[0].label(),
                   best_cv_top1=round(best[1], 4))
    print(f"paper grid, shared kernel matrices: {seconds:.1f}s; best {best[0].label()} "
          f"(CV top-1 {best[1]:.3f})")
    if _COMPARE.value:
        plain, best2 = time_grid(x, y, precompute=False)
        numbers.update(plain_seconds=round(plain, 1), speedup=round(plain / seconds, 2),
                       same_best=best2[0] == best[0])
        print(f"paper grid, plain SVC fits: {plain:.1f}s; speed-up {plain / seconds:.2f}x; "
              f"same best: {best2[0] == best[0]}")
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(numbers, f, indent=2)


if __name__ == "__main__":
    app.run(main)
