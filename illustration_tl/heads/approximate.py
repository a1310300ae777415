"""Nyström features of the RBF kernel: the approximate kernel SVM of large folders (issue 21).

A kernel SVM needs the rows x rows kernel matrix. The Nyström method (Williams &
Seeger 2001; scikit-learn's ``Nystroem``) picks ``m`` components among the training
rows (here a stratified sample, so every class is represented) and maps a row ``x``
to ``K(x, components) @ P`` with ``P = K(components, components)^(-1/2)``: the inner
products of the mapped rows approximate the kernel, so a linear classifier on them
approximates the kernel SVM, with memory and time linear in the rows. The map is
plain arrays, computed the same way in numpy (:meth:`NystroemMap.transform`) and in
TensorFlow (:meth:`NystroemMap.tf_transform`, inside the exported SavedModel).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from illustration_tl.heads.budget import stratified_sample

CHUNK_ROWS = 4096   # rows mapped at once (bounds the temporary kernel block)


@dataclasses.dataclass
class NystroemMap:
    """``x -> exp(-gamma * |x - components|²) @ projection``."""

    components: np.ndarray   # (m, d)
    projection: np.ndarray   # (m, m)
    gamma: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, gamma: float, components: int,
            seed: int = 0) -> NystroemMap:
        """Components = a stratified sample of ``components`` rows of ``x`` (labels ``y``);
        the projection as scikit-learn's ``Nystroem`` computes it (pseudo-inverse square
        root of their kernel matrix)."""
        return cls.from_components(x[stratified_sample(y, components, seed)], gamma, seed)

    @classmethod
    def from_components(cls, components: np.ndarray, gamma: float, seed: int = 0
                        ) -> NystroemMap:
        """The map whose components are the rows ``components`` (already sampled)."""
        from sklearn.kernel_approximation import Nystroem

        comp = np.asarray(components, np.float64)
        ny = Nystroem(kernel="rbf", gamma=gamma, n_components=len(comp),
                      random_state=seed).fit(comp)
        return cls(np.asarray(ny.components_, np.float64),
                   np.asarray(ny.normalization_, np.float64).T, float(gamma))

    @property
    def size(self) -> int:
        return len(self.components)

    def _block(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        c = self.components
        d2 = (np.einsum("ij,ij->i", x, x)[:, None] + np.einsum("ij,ij->i", c, c)[None, :]
              - 2.0 * (x @ c.T))
        np.maximum(d2, 0.0, out=d2)
        d2 *= -self.gamma
        np.exp(d2, out=d2)
        return d2 @ self.projection

    def transform(self, x: np.ndarray, out_dtype: Any = np.float64) -> np.ndarray:
        """The mapped rows (n, m), computed :data:`CHUNK_ROWS` rows at a time."""
        out = np.empty((len(x), self.size), out_dtype)
        for i in range(0, len(x), CHUNK_ROWS):
            out[i:i + CHUNK_ROWS] = self._block(x[i:i + CHUNK_ROWS])
        return out

    # --- storage and TensorFlow ---------------------------------------------------------
    def to_arrays(self, prefix: str = "nystroem_") -> dict[str, np.ndarray]:
        return {f"{prefix}components": self.components,
                f"{prefix}projection": self.projection,
                f"{prefix}gamma": np.asarray(self.gamma, np.float64)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str = "nystroem_") -> NystroemMap:
        return cls(np.asarray(a[f"{prefix}components"], np.float64),
                   np.asarray(a[f"{prefix}projection"], np.float64),
                   float(a[f"{prefix}gamma"]))

    def tf_variables(self) -> Any:
        import tensorflow as tf

        module = tf.Module(name="nystroem")
        module.components = tf.Variable(self.components, trainable=False)
        module.projection = tf.Variable(self.projection, trainable=False)
        module.gamma = tf.Variable(self.gamma, dtype=tf.float64, trainable=False)
        return module

    @staticmethod
    def tf_transform(x: Any, module: Any) -> Any:
        """:meth:`transform` in TensorFlow (float64), with ``module`` from
        :meth:`tf_variables`."""
        import tensorflow as tf

        x = tf.cast(x, tf.float64)
        c = module.components
        d2 = (tf.reduce_sum(x * x, axis=1, keepdims=True)
              + tf.reduce_sum(c * c, axis=1)[None, :]
              - 2.0 * tf.matmul(x, c, transpose_b=True))
        k = tf.exp(-module.gamma * tf.maximum(d2, 0.0))
        return tf.matmul(k, module.projection)
