"""illustration_tl.train: the compatibility module re-exporting illustration_tl.training."""

from illustration_tl import train
from illustration_tl.training import checkpoints, config, data, fit_loop, history, loop, model


def test_old_names_are_the_new_objects():
    assert train.TrainConfig is config.TrainConfig
    assert train.TrainDataConfig is config.TrainDataConfig
    assert train.TrainData is data.TrainData
    assert train.tfds_data is data.tfds_data
    assert train.batched_input is data.batched_input
    assert train.optimize is loop.optimize
    assert train.fit is fit_loop.fit
    assert train.Result is history.Result
    assert train.prepare is model.prepare
    assert train.prune_checkpoints is checkpoints.prune_checkpoints
    assert (train.CHECKPOINT_DIR, train.LOG_DIR, train.HISTORY_FILE) == (
        "checkpoints", "logs", "history.json")
    assert sorted(train.__all__) == sorted(name for name in vars(train)
                                           if not name.startswith("_"))
