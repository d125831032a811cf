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


def test_a_rerun_adds_its_rows_keeps_the_others_and_appends_its_command():
  old = {"rows": [{"images": 60000, "epochs": 20, "top1": 0.9283},
                  {"images": 60000, "epochs": 10, "top1": 0.9205}],
         "command": "data_scaling.py --workdir=a", "machine": {"cpus": 2},
         "date": "2026-12-02"}
  record = data_scaling.merge(old, [{"images": 60000, "epochs": 40, "top1": 0.9330},
                                    {"images": 60000, "epochs": 20, "top1": 0.9290}],
                              "data_scaling.py --workdir=b --epochs=40")
  assert [(r["epochs"], r["top1"]) for r in record["rows"]] == [
      (10, 0.9205), (20, 0.9290), (40, 0.9330)]
  assert record["commands"] == ["data_scaling.py --workdir=a",
                                "data_scaling.py --workdir=b --epochs=40"]
  assert (record["machine"], record["date"]) == ({"cpus": 2}, "2026-12-02")
  assert record["headroom_points"] == {
      "60000 images: 20 epochs minus 10 (twice the steps)": 0.85,
      "60000 images: 40 epochs minus 20 (twice the steps)": 0.4}


def test_other_seeds_are_rows_of_their_own_and_stay_out_of_the_headroom():
  old = {"rows": [{"images": 60000, "epochs": 20, "top1": 0.9283},
                  {"images": 60000, "epochs": 40, "top1": 0.9308}]}
  record = data_scaling.merge(old, [{"images": 60000, "epochs": 40, "seed": 1,
                                     "top1": 0.9400}], "data_scaling.py --seeds=1")
  assert [(r["epochs"], r.get("seed", 0), r["top1"]) for r in record["rows"]] == [
      (20, 0, 0.9283), (40, 0, 0.9308), (40, 1, 0.9400)]
  assert record["headroom_points"] == {
      "60000 images: 40 epochs minus 20 (twice the steps)": 0.25}
