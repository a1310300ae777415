"""illustration-tl: transfer learning from ImageNet CNNs to illustrations.

A reimplementation of Lagunas & Garces, *Transfer Learning for Illustration
Classification*, CEIG 2017. Heavy modules (TensorFlow, Keras) are imported by
the submodules that need them, never here, so ``import illustration_tl`` and
the vocabulary and name-mapping tools stay fast. ``illustration_tl.fit`` and
``illustration_tl.load`` (see :mod:`illustration_tl.api`) are loaded on first use.
"""

__version__ = "0.1.0"

__all__ = ["fit", "load", "__version__"]


def __getattr__(name: str):
    if name in ("fit", "load", "Classifier"):
        from illustration_tl import api

        return getattr(api, name)
    raise AttributeError(f"module 'illustration_tl' has no attribute {name!r}")
