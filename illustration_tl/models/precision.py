"""The compute precision of frozen feature extraction: float32 or bfloat16 (issue 21).

The paper runs VGG in float32 (§5, §6.1). On hardware with native bfloat16 (GPUs of
compute capability 8.0 and newer; CPUs with AVX-512 BF16 or AMX-BF16, which
TensorFlow's oneDNN kernels use) the conv base runs in bfloat16 with float32
variables (Keras's ``mixed_bfloat16`` policy); elsewhere bfloat16 is emulated and
slower, so ``auto`` keeps float32. This module is the one place that decides;
:func:`policy_scope` applies the decision while a model is built and leaves no global
state behind.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

from illustration_tl.errors import UserError

__all__ = ["AUTO", "BFLOAT16", "FLOAT32", "CHOICES", "CPU_BF16_FLAGS", "MIN_GPU_CAPABILITY",
           "CPUINFO", "resolve", "cpu_flags", "gpu_capabilities", "keras_policy",
           "policy_scope"]

AUTO = "auto"
FLOAT32 = "float32"
BFLOAT16 = "bfloat16"
CHOICES = (AUTO, FLOAT32, BFLOAT16)
# /proc/cpuinfo flags of x86 CPUs whose instructions compute bfloat16 dot products.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# NVIDIA GPUs run bfloat16 natively from Ampere (compute capability 8.0) on.
MIN_GPU_CAPABILITY = (8, 0)
CPUINFO = "/proc/cpuinfo"
# The Keras dtype policy of each resolved precision.
_POLICIES = {FLOAT32: "float32", BFLOAT16: "mixed_bfloat16"}


def _check(requested: str, flag: str) -> str:
    value = str(requested).strip().lower()
    if value not in CHOICES:
        raise UserError(f"{flag}={requested!r}: choose {', '.join(CHOICES)}")
    return value


def resolve(requested: str, *, cpu: frozenset[str] | None = None,
            gpus: Sequence[tuple[int, int]] | None = None,
            flag: str = "--precision") -> str:
    """``float32`` or ``bfloat16`` for ``requested`` (``auto``, ``float32`` or ``bfloat16``).

    ``auto`` is ``bfloat16`` when the model will run on hardware with native bfloat16:
    with GPUs visible (``gpus``: their compute capabilities), when every one is at least
    :data:`MIN_GPU_CAPABILITY`; without GPUs, when the CPU's flags (``cpu``) include one
    of :data:`CPU_BF16_FLAGS`. Anything unknown (no cpuinfo, a GPU of unknown capability)
    is ``float32``. ``cpu``/``gpus`` default to this machine's (:func:`cpu_flags`,
    :func:`gpu_capabilities`). An unknown value is one line naming ``flag``.
    """
    value = _check(requested, flag)
    if value != AUTO:
        return value
    gpus = gpu_capabilities() if gpus is None else gpus
    if gpus:
        return BFLOAT16 if all(tuple(c) >= MIN_GPU_CAPABILITY for c in gpus) else FLOAT32
    cpu = cpu_flags() if cpu is None else cpu
    return BFLOAT16 if cpu & CPU_BF16_FLAGS else FLOAT32


def cpu_flags(path: str = CPUINFO) -> frozenset[str]:
    """The CPU feature flags listed in ``path`` (Linux's ``/proc/cpuinfo``); empty
    when it cannot be read (another OS: ``auto`` then keeps float32)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep and name.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def gpu_capabilities() -> list[tuple[int, int]]:
    """The compute capability of each GPU the Keras backend sees; ``(0, 0)`` for a GPU
    whose capability is unknown (so ``auto`` keeps float32 on it)."""
    import keras

    found: list[tuple[int, int]] = []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            found.append(tuple(details.get("compute_capability") or (0, 0)))  # type: ignore
    elif keras.backend.backend() == "jax":
        import jax

        for device in jax.devices():
            if device.platform == "gpu":
                found.append(_capability(getattr(device, "compute_capability", "")))
    return found


def _capability(text: str) -> tuple[int, int]:
    major, _, minor = str(text).partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and minor.isdigit() else (0, 0)


def keras_policy(precision: str) -> str:
    """The Keras dtype policy that computes in ``precision`` (``float32`` or
    ``bfloat16``; variables stay float32)."""
    value = _check(precision, "precision")
    if value == AUTO:
        raise ValueError("resolve() 'auto' before building a model")
    return _POLICIES[value]


@contextlib.contextmanager
def policy_scope(precision: str) -> Iterator[Any]:
    """Sets Keras's global dtype policy to compute in ``precision`` while the block
    runs (layers built inside take it), and restores the previous one after it,
    on error too."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras_policy(precision))
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)

