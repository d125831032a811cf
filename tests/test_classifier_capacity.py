"""results/classifier_capacity.py: the workflow stage config it retrains, its checks and
its rows."""
import json

import pytest

from synthfactory.models import classifiers as classifier_models
from synthfactory.pipelines.configs import fashion
import classifier_capacity  # from results/ (pytest.ini's pythonpath)


def test_config_is_the_full_workflows_stage_with_another_model():
  config = classifier_capacity.stage_config("small_cnn_w64", ["real", "real+synthetic"],
                                            "ratio:0.25+filter:0.9")
  full = fashion.get_config("full")
  assert config.classifier.model.name == "small_cnn_w64"
  assert config.conditions == ("real", "real+synthetic")
  assert (config.mixed.mix, config.mixed.synthetic_fraction,
          config.mixed.min_confidence) == ("ratio", 0.25, 0.9)
  config.classifier.model.name = full.classifier.model.name
  assert config.classifier.to_dict() == full.classifier.to_dict()  # Same recipe.


@pytest.mark.parametrize("model, conditions, mix, problem", [
    ("wide_cnn", ["real"], "concat", "unknown classifier 'wide_cnn'"),
    ("small_cnn", ["real", "mixed"], "concat", r"unknown \['mixed'\]"),
    ("small_cnn", ["real+synthetic", "real"], "concat+filter:0.9",
     "list 'real' before 'real\\+synthetic'"),
    ("small_cnn", ["real", "real+synthetic"], "ratio:0.3", "k/256"),
])
def test_bad_arguments_name_the_problem(model, conditions, mix, problem):
  with pytest.raises(SystemExit, match=problem):
    classifier_capacity.stage_config(model, conditions, mix)


def test_a_workflow_without_its_data_stages_is_refused(tmp_path):
  with pytest.raises(SystemExit, match="01_real_data stage finished"):
    classifier_capacity.finished_stage_outputs(tmp_path, "01_real_data")


def test_row_compares_real_plus_synthetic_with_real_only(tmp_path):
  results = {}
  for condition, top1, num_train, accuracies in (
      ("real", 0.9281, 60_000, (0.5, 0.93, 0.95)),
      ("real+synthetic", 0.9320, 120_000, (0.5, 0.90, 0.92))):
    workdir = tmp_path / condition
    workdir.mkdir()
    # 256-image batches: an epoch is 234 steps at 60,000 images, 468 at 120,000.
    rows = [{"step": s, "accuracy": a, "images_per_sec": 100 * (i + 1)}
            for i, (s, a) in enumerate(zip((1, 600, 700), accuracies))]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results[condition] = {"workdir": str(workdir), "top1": top1, "steps": 700,
                          "num_train": num_train, "class_names": ["a", "b"],
                          "per_class": [0.9, 0.95]}
  results["real+synthetic"]["synthetic_filter"] = {"kept": 40_000}
  row = classifier_capacity.summarize(results, batch_size=256)
  assert row["real_plus_synthetic_minus_real_points"] == pytest.approx(0.39)
  assert row["train_accuracy_last_epoch"] == {"real": 0.94, "real+synthetic": 0.91}
  assert row["train_images_per_sec"] == {"real": 200, "real+synthetic": 200}
  assert row["synthetic_kept"] == 40_000
  assert row["per_class"]["real"] == {"a": 0.9, "b": 0.95}


def test_the_wide_cnn_has_twice_the_channels():
  def shapes(name):
    return classifier_models.variable_shapes(
        classifier_models.build(classifier_models.model_config(name, 10)),
        (28, 28, 1))["params"]
  narrow, wide = shapes("small_cnn"), shapes("small_cnn_w64")
  assert wide["Conv_3"]["kernel"].shape == (3, 3, 128, 128)
  assert narrow["Conv_3"]["kernel"].shape == (3, 3, 64, 64)
  assert wide["head"]["kernel"].shape == (7 * 7 * 128, 10)


def test_record_names_what_the_study_replaced_and_its_command(tmp_path, monkeypatch):
  monkeypatch.setattr("sys.argv", ["x.py", "--workflow=w", "--workdir=d"])
  output = tmp_path / "classifier_capacity.json"
  upstream = {"build": {"tfds_name": "synthetic_fashion_mnist/x"}}
  classifier_capacity.write_record(output, upstream, "model", rows={"a": 1}, mix="m")
  record = json.loads(output.read_text())
  assert (record["rows"], record["mix"]) == ({"a": 1}, "m")
  assert record["synthetic"] == "synthetic_fashion_mnist/x"
  assert "the model replaced" in record["recipe"]
  assert record["command"] == (".venv/bin/python results/classifier_capacity.py "
                               "--workflow=w --workdir=d")
  assert {"machine", "date"} <= set(record)
