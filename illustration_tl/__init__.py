"""illustration-tl: transfer learning from ImageNet CNNs to illustrations.

A reimplementation of Lagunas & Garces, *Transfer Learning for Illustration
Classification*, CEIG 2017. Heavy modules (TensorFlow, Keras) are imported by
the submodules that need them, never here, so ``import illustration_tl`` and
the vocabulary and name-mapping tools stay fast. ``fit``, ``load`` and
``Classifier`` (see :mod:`illustration_tl.api`) are loaded on first use.

Packages, from the bottom up (each imports only the ones before it; see
``docs/architecture.md``): ``core``, ``models``, ``datasets``, ``features``,
``evaluation``, ``heads``, ``training``, ``serving``, ``pipelines``, ``commands``.
"""

__version__ = "0.1.0"

__all__ = ["Classifier", "Predictions", "SkippedInput", "UserError", "fit", "load",
           "__version__"]

_API = ("Classifier", "Predictions", "SkippedInput", "fit", "load")


def __getattr__(name: str):
    if name in _API:
        from illustration_tl import api

        return getattr(api, name)
    if name == "UserError":
        from illustration_tl.errors import UserError

        return UserError
    raise AttributeError(f"module 'illustration_tl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
