"""illustration-tl: transfer learning from ImageNet CNNs to illustrations.

A reimplementation of Lagunas & Garces, *Transfer Learning for Illustration
Classification*, CEIG 2017. Heavy modules (TensorFlow, Keras) are imported by
the submodules that need them, never here, so ``import illustration_tl`` and
the vocabulary and name-mapping tools stay fast.
"""

__version__ = "0.1.0"
