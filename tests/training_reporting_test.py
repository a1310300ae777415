"""Console lines and TensorBoard scalars (illustration_tl.training.reporting)."""

import os

import pytest
import train_helpers

from illustration_tl.training import reporting


def test_progress_line():
    line = reporting.progress_line(2, 55, 10, 300, 1.23456, 0.5, 12.34, 3723.9, "[worker 1] ")
    assert line == ("[worker 1] epoch 2/55  step 10/300  loss 1.2346  acc 0.500  12.3 img/s  "
                    "ETA 1:02:03")
    assert reporting.progress_line(1, 1, 1, 1, 0, 0, 0, float("inf"), "").endswith("ETA ?")


def test_epoch_line_lists_every_evaluation_set_and_the_plateau_step():
    record = {"epoch": 3, "step": 30, "train_loss": 0.5, "train_accuracy": 0.75,
              "val_top1": 0.5, "val_top5": 0.9, "val_examples": 40, "curated_test_top1": 0.25,
              "curated_test_top5": 0.5, "curated_test_examples": 8, "learning_rate": 0.01,
              "seconds": 12.4, "reduced_learning_rate_to": 0.001}
    assert reporting.epoch_line(record) == (
        "epoch 3 done: train loss 0.5000 acc 0.750, curated_test top-1 0.250 top-5 0.500 "
        "(8 ex.), val top-1 0.500 top-5 0.900 (40 ex.), lr 0.01  12s, plateau: lr -> 0.001")


def test_scalars_go_to_logs(tmp_path):
    writer = reporting.summary_writer(str(tmp_path), True)
    reporting.write_progress(writer, 4, 1.5, 0.25, 10.0, 0.01, [1.0, 0.01])
    reporting.write_epoch(writer, {"epoch": 1, "step": 6, "train_loss": 1.25, "val_top1": 0.5,
                                   "note": "text is skipped"})
    writer.close()
    scalars = train_helpers.event_scalars(tmp_path / "logs")
    assert scalars["train/loss"] == [(4, 1.5)]
    assert scalars["epoch/train_loss"] == [(6, 1.25)]
    assert scalars["epoch/val_top1"] == [(6, 0.5)]
    groups = sorted(tag for tag in scalars if tag.startswith("learning_rate/"))
    assert len(groups) == 2
    assert sorted(v for tag in groups for _, v in scalars[tag]) == pytest.approx([1e-4, 1e-2])
    assert not any(tag.endswith(("epoch", "step", "note")) for tag in scalars)


def test_no_logs_without_summaries(tmp_path):
    writer = reporting.summary_writer(str(tmp_path), False)
    reporting.write_epoch(writer, {"epoch": 1, "step": 1, "train_loss": 1.0})
    writer.close()
    assert not os.path.exists(tmp_path / "logs")
