"""Where the adaptive layer-based optimization (paper §7) runs: tf.distribute set-up.

The paper trained on one GPU with Caffe; users of this library train on one
or many GPUs, several machines, or TPUs. This module picks the
``tf.distribute`` strategy named by ``--strategy``, applies mixed precision and
determinism settings, and says which process is the chief (the one that
writes the final model and the TensorBoard logs). TensorFlow backend only.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from illustration_tl.errors import UserError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION = ("none", "bfloat16", "float16")


def _tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` environment variable ({} when unset)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG is not valid JSON ({e}); see "
                        "https://www.tensorflow.org/guide/distributed_training") from e


def _cluster_size(config: dict[str, Any]) -> int:
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(k, [])) for k in ("chief", "worker"))


def make_strategy(name: str = "auto", *, tpu: str = "") -> Any:
    """The ``tf.distribute.Strategy`` for ``--strategy`` (call before any other TF op).

    ``auto``: multi-worker when ``TF_CONFIG`` names several workers, mirrored
    when the machine has several GPUs, else the default strategy.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise UserError(f"--strategy={name!r}: choose from {', '.join(STRATEGIES)}")
    if name == "auto":
        if _cluster_size(_tf_config()) > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not _tf_config():
            raise UserError("--strategy=multi_worker needs TF_CONFIG describing the cluster "
                            "and this worker's task")
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def task(strategy: Any) -> tuple[str | None, int | None]:
    """This process's ``(task_type, task_id)`` in a multi-worker cluster, else ``(None, None)``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not _tf_config():
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy: Any) -> bool:
    """True for the process that writes outputs (worker 0, or the ``chief`` task)."""
    task_type, task_id = task(strategy)
    if task_type is None:
        return True
    has_chief = bool(_tf_config().get("cluster", {}).get("chief"))
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def write_dir(directory: str, strategy: Any) -> str:
    """``directory`` on the chief; a private temporary folder beside it on other workers.

    Every worker must take part in checkpoint saves (they may need collective
    ops), but only the chief's copy is kept: see :func:`cleanup_write_dir`.
    """
    if is_chief(strategy):
        return directory
    task_type, task_id = task(strategy)
    return os.path.join(directory, f".{task_type}-{task_id}")


def cleanup_write_dir(directory: str, strategy: Any) -> None:
    """Deletes a non-chief worker's temporary folder from :func:`write_dir`."""
    if not is_chief(strategy):
        shutil.rmtree(write_dir(directory, strategy), ignore_errors=True)


def configure(*, seed: int, deterministic: bool, mixed_precision: str) -> None:
    """Seeds, op determinism and the Keras dtype policy, before the model is built."""
    import keras
    import tensorflow as tf

    if mixed_precision not in MIXED_PRECISION:
        raise UserError(f"--mixed_precision={mixed_precision!r}: choose from "
                        f"{', '.join(MIXED_PRECISION)}")
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = {"none": "float32", "bfloat16": "mixed_bfloat16",
              "float16": "mixed_float16"}[mixed_precision]
    keras.mixed_precision.set_dtype_policy(policy)
