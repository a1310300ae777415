"""The data of a training run (illustration_tl.training.data)."""

import numpy as np
import pytest
import tensorflow as tf

from illustration_tl.errors import UserError
from illustration_tl.training.data import batched_input, label_map, steps_per_epoch


def test_label_map_by_name_then_imagenet_index():
    mapping = label_map(["n02690373", "n07747607", "dog"], [404, 950, -1],
                        ["airplane", "dog", "cat", "orange"], [404, -1, 281, 950])
    assert mapping == [0, 2, -1, 1]


def test_distributed_dataset_helpers_shard_per_worker():
    examples = tf.data.Dataset.from_tensor_slices((np.arange(20), np.arange(20)))
    make = batched_input(examples, 4, seed=1)
    epoch0 = [y.numpy().tolist() for _, y in make(0)]
    assert [len(b) for b in epoch0] == [4] * 5
    assert epoch0 == [y.numpy().tolist() for _, y in make(0)]  # fixed order per epoch
    assert epoch0 != [y.numpy().tolist() for _, y in make(1)]
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    shard = [y.numpy().tolist() for _, y in make(0, context)]
    assert all(len(b) == 2 for b in shard) and all(x % 2 == 1 for b in shard for x in b)
    assert steps_per_epoch(20, 8) == 2
    with pytest.raises(UserError, match="--batch_size"):
        steps_per_epoch(5, 8)
