"""results/data_scaling.py: the grid's configs, its training accuracy and headroom."""
import json

import pytest

import data_scaling  # from results/ (pytest.ini's pythonpath)


def test_config_is_the_full_workflows_real_only_recipe_on_a_prefix():
  half = data_scaling.real_only_config(30000, 20)
  assert (half.data.real, half.data.mix, half.epochs) == (
      "fashion_mnist_idx:train[:30000]", "real", 20)
  whole = data_scaling.real_only_config(60000, 10)
  assert whole.data.real == "fashion_mnist_idx:train"
  assert whole.model.name == "small_cnn" and whole.batch_size == half.batch_size
  for images, epochs in ((0, 10), (60001, 10), (1000, 0)):
    with pytest.raises(SystemExit, match="give"):
      data_scaling.real_only_config(images, epochs)


def test_train_accuracy_averages_the_last_epoch_only(tmp_path):
  rows = [{"step": s, "accuracy": a, "loss": 1.0}
          for s, a in ((100, 0.5), (200, 0.8), (300, 0.9), (300, 0.7))]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  # Steps 200 and 300 are the last 150; step 300's repeated record keeps its last.
  assert data_scaling.last_epoch_train_accuracy(tmp_path, 150) == pytest.approx(0.75)


def test_headroom_compares_equal_steps_and_twice_the_steps():
  rows = [{"images": n, "epochs": e, "top1": t} for n, e, t in
          ((30000, 10, 0.9099), (30000, 20, 0.9184), (60000, 10, 0.9217))]
  assert data_scaling.headroom(rows) == {
      "60000 images x 10 epochs minus 30000 x 20 (equal steps)": 0.33,
      "30000 images: 20 epochs minus 10 (twice the steps)": 0.85}
