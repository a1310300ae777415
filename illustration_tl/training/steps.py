"""The custom training step of the paper §7 recipe under a ``tf.distribute`` strategy.

Per-example cross-entropy averaged over the *global* batch
(``tf.nn.compute_average_loss``), the model's regularization losses scaled per
replica, float32 softmax and loss under mixed precision, loss scaling through
the optimizer (float16), per-layer learning rates inside the optimizer
(:mod:`lr_multipliers`), optional XLA, several steps per ``tf.function`` call.
Needs the TensorFlow backend.
"""

from __future__ import annotations

from typing import Any

from illustration_tl.training.config import TrainConfig
from illustration_tl.training.model import Prepared


class TrainSteps:
    """The ``tf.function``s of one run: ``train(iterator, num_steps)`` and ``evaluate(dataset)``.

    ``train`` runs ``num_steps`` steps on batches of a distributed iterator and
    returns the sums of per-example loss, correct predictions and examples
    (float32, all replicas). ``evaluate`` runs over a distributed dataset and
    returns the sums of loss, top-1 hits, top-5 hits and examples, counting only
    labels >= 0.
    """

    def __init__(self, prepared: Prepared, config: TrainConfig, num_classes: int) -> None:
        import keras
        import tensorflow as tf

        strategy, model, optimizer = prepared.strategy, prepared.model, prepared.optimizer
        global_batch = config.batch_size
        top_k = min(5, num_classes)

        def replica_train(images: Any, labels: Any) -> Any:
            labels = tf.cast(labels, tf.int32)
            with tf.GradientTape() as tape:
                probs = tf.cast(model(images, training=True), tf.float32)
                per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(
                        tf.add_n([tf.cast(x, tf.float32) for x in model.losses]))
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            correct = tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), labels),
                              tf.float32)
            return tf.stack([tf.reduce_sum(per_example), tf.reduce_sum(correct),
                             tf.cast(tf.size(labels), tf.float32)])

        def replica_eval(images: Any, labels: Any) -> Any:
            labels = tf.cast(labels, tf.int32)
            probs = tf.cast(model(images, training=False), tf.float32)
            valid = labels >= 0
            safe = tf.where(valid, labels, 0)
            weight = tf.cast(valid, tf.float32)
            per_example = keras.losses.sparse_categorical_crossentropy(safe, probs)
            hits = tf.equal(tf.math.top_k(probs, top_k).indices, safe[:, None])
            top1 = tf.cast(hits[:, 0], tf.float32)
            topk = tf.cast(tf.reduce_any(hits, axis=1), tf.float32)
            return tf.stack([tf.reduce_sum(per_example * weight), tf.reduce_sum(top1 * weight),
                             tf.reduce_sum(topk * weight), tf.reduce_sum(weight)])

        if config.jit_compile:
            replica_train = tf.function(replica_train, jit_compile=True)
            replica_eval = tf.function(replica_eval, jit_compile=True)

        @tf.function
        def train(iterator: Any, num_steps: Any) -> Any:
            totals = tf.zeros([3], tf.float32)
            for _ in tf.range(num_steps):
                images, labels = next(iterator)
                per_replica = strategy.run(replica_train, args=(images, labels))
                totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            return totals

        @tf.function
        def evaluate(dataset: Any) -> Any:
            totals = tf.zeros([4], tf.float32)
            for images, labels in dataset:
                per_replica = strategy.run(replica_eval, args=(images, labels))
                totals += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            return totals

        self.train = train
        self.evaluate = evaluate
