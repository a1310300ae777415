"""Per-epoch records and history.json (illustration_tl.training.history)."""

import json

from illustration_tl.training import history
from illustration_tl.training.data import TrainData


def test_history_file_round_trip_up_to_an_epoch(tmp_path):
    path = history.history_path(str(tmp_path))
    assert path == str(tmp_path / "history.json")
    assert history.read(path, 5) == []
    records = [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}]
    history.write(path, records)
    with open(path) as f:
        text = f.read()
    assert json.loads(text) == records and text.endswith("\n") and '\n  {' in text
    assert history.read(path, 2) == records
    assert history.read(path, 1) == records[:1]   # what a checkpoint of epoch 1 covers


def test_a_repeated_epoch_replaces_its_record():
    records = [{"epoch": 1, "x": 1}, {"epoch": 2, "x": 2}]
    assert history.with_record(records, {"epoch": 3, "x": 3}) == records + [{"epoch": 3, "x": 3}]
    assert history.with_record(records, {"epoch": 2, "x": 9}) == [{"epoch": 1, "x": 1},
                                                                  {"epoch": 2, "x": 9}]


def test_evaluation_entries_are_prefixed_by_set():
    def validation():
        return "val-set"

    def curated():
        return "curated-set"

    scores = {"val-set": {"top1": 0.5, "loss": 1.0}, "curated-set": {"top1": 0.25}}
    data = TrainData(["a"], lambda epoch, ctx: None, 1, validation=validation,
                     extra_eval={"curated_test": curated})
    entries = history.evaluations(data, lambda make: scores[make()])
    assert entries == {"val_top1": 0.5, "val_loss": 1.0, "curated_test_top1": 0.25}
    bare = TrainData(["a"], lambda epoch, ctx: None, 1)
    assert history.evaluations(bare, lambda make: scores[make()]) == {}
