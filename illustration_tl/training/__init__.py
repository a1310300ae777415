"""Training for the adaptive layer-based optimization (paper §7).

The paper fine-tunes VGG19 on the noisy clip-art set with Caffe: layers 1-10
and 17-19 re-initialized at learning rate 1e-2, layers 11-16 kept from
ImageNet at 1e-4, SGD momentum 0.9, weight decay 5e-4, dropout 0.5, 55 epochs,
learning rate reduced on plateau. One module per concern:

* :mod:`.config`: :class:`~.config.TrainConfig` (the recipe, one field per
  ``optimize`` flag) and :class:`~.config.TrainDataConfig` (the data flags);
* :mod:`.data`: :class:`~.data.TrainData` and the ``tf.data`` input
  (:func:`~.data.tfds_data`, :func:`~.data.batched_input`, :func:`~.data.label_map`);
* :mod:`.model`: the rebuilt network with its re-initialized layers and its
  per-layer learning-rate optimizer (:func:`~.model.prepare`), the ``--dry_run``
  table and the saved ``model.keras`` + ``model_config.json``;
* :mod:`.plateau`: reduce-on-plateau, shared by both loops;
* :mod:`.history`: the per-epoch records, ``history.json`` and
  :class:`~.history.Result`;
* :mod:`.reporting`: console progress lines and TensorBoard scalars (``logs/``);
* :mod:`.steps`: the ``tf.function`` training and evaluation steps;
* :mod:`.checkpoints`: the run state and ``tf.train`` checkpoints (``checkpoints/``);
* :mod:`.loop`: :func:`~.loop.optimize`, the custom ``tf.distribute`` loop
  (TensorFlow backend);
* :mod:`.fit_loop`: :func:`~.fit_loop.fit`, the same recipe through
  ``model.fit`` on any Keras backend (JAX included);
* :mod:`.run`: :func:`~.run.train`, which picks the loop for the Keras backend.

The package's ``__init__`` imports nothing, so ``training.config`` (which the
command line needs to define its flags) loads without Keras.
"""

__all__ = ["checkpoints", "config", "data", "distribute", "fit_loop", "history", "loop",
           "lr_multipliers", "model", "plateau", "reporting", "run", "steps"]
