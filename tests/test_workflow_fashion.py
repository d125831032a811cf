"""The whole embedded workflow on its `ci` variant, as a user runs it: every stage's
outputs, the report, a kill in the middle and the resumed run, and the skip-all rerun.
Also what the ImageNet config says it is missing here."""
import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from synthfactory.datasets import manifest as manifest_lib
from synthfactory.pipelines import workflow
from synthfactory.pipelines.configs import fashion
from synthfactory.pipelines.configs import imagenet
from synthfactory.pipelines.stages import classifiers as classifiers_stage
from synthfactory.pipelines.stages import report as report_stage
from synthfactory.models import classifiers as classifier_models
from synthfactory.training import classifier_data
from synthfactory.training import classifier_trainer

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"{REPO / 'pipelines' / 'configs' / 'fashion.py'}:ci"


def _command(workdir, *extra):
  return [sys.executable, "-m", "synthfactory.pipelines.run", f"--config={CONFIG}",
          f"--workdir={workdir}", *extra]


def _run(workdir, *extra):
  done = subprocess.run(_command(workdir, *extra), capture_output=True, text=True,
                        timeout=900)
  assert done.returncode == 0, done.stderr[-4000:]
  return done.stdout + done.stderr


def _markers(workdir):
  return {p.parent.name: json.loads(p.read_text())
          for p in sorted(pathlib.Path(workdir).glob("*/COMPLETE.json"))}


def _kill_after(workdir, line, log_file, timeout=600):
  """Starts the workflow and SIGKILLs it as soon as its log has `line`; returns the
  killed run's log. The line is logged once a save is on disk; the ci classifier runs
  well past it (0.3 s from step 10 to its end at 20 steps raced a 0.2 s poll)."""
  with open(log_file, "w") as log:
    proc = subprocess.Popen(_command(workdir), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
  deadline = time.monotonic() + timeout
  while line not in pathlib.Path(log_file).read_text():
    assert proc.poll() is None, "the workflow ended before the kill point"
    assert time.monotonic() < deadline, f"{line!r} never appeared"
    time.sleep(0.02)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  return pathlib.Path(log_file).read_text()


def test_ci_workflow_killed_then_resumed_then_skipped(tmp_path):
  workdir = tmp_path / "wf"
  # Killed while training the first classifier, after its first checkpoint.
  checkpoints = workdir / "05_classifiers" / "real" / "checkpoints"
  killed_log = _kill_after(workdir, f"checkpoint saved at step 10: {checkpoints}/10",
                           tmp_path / "killed.log")
  before = _markers(workdir)
  assert sorted(before) == ["01_real_data", "02_diffusion", "03_generate", "04_build"]
  # The last save before the kill (10, or a later one the kill was slower than).
  saved = re.findall(rf"checkpoint saved at step (\d+): {re.escape(str(checkpoints))}/",
                     killed_log)
  assert int(saved[-1]) < 100, "the real-only classifier finished before the kill"
  status = _run(workdir, "--status")  # Where the killed run got to; runs nothing.
  assert re.search(r"generate +complete in ", status)
  assert (f"classifiers  started, not complete; a run resumes it: real: at step "
          f"{saved[-1]}; synthetic: not started; real+synthetic: not started") in status
  assert re.search(r"evaluate +waits for classifiers", status)
  assert _markers(workdir) == before

  log = _run(workdir)
  after = _markers(workdir)
  assert len(after) == 7
  for name, marker in before.items():  # Complete stages were not redone.
    assert after[name]["finished"] == marker["finished"], name
    assert f"{name[3:]}: complete, skipped" in log
  assert f"resumed from step {saved[-1]}" in log  # The killed classifier run went on.

  records = {name[3:]: m["outputs"] for name, m in after.items()}
  # generate: exactly the plan (0.001 × 6000 = 6 a class), a valid dataset.
  dataset = pathlib.Path(records["generate"]["dataset_dir"])
  manifest = json.loads((dataset / manifest_lib.MANIFEST_FILE).read_text())
  assert manifest["num_records"] == records["generate"]["num_images"] == 60
  assert [c["count"] for c in manifest["plan"]["classes"]] == [6] * 10
  assert manifest_lib.problems(dataset) == []
  # build: registered with TFDS, readable with tfds.data_source.
  source = tfds.builder_from_directory(records["build"]["folder"]).as_data_source(
      "train")
  assert len(source) == 60 and source[0]["image"].shape == (28, 28, 1)
  # classifiers: three conditions, accuracies in range, per class.
  trained = records["classifiers"]
  assert sorted(trained) == ["real", "real+synthetic", "synthetic"]
  for condition, got in trained.items():
    assert 0.0 <= got["top1"] <= got["top5"] <= 1.0, condition
    assert len(got["per_class"]) == 10
  assert trained["real+synthetic"]["num_train"] == 1000 + 60
  # evaluate: a few diffusion steps of a tiny model are far from real data; real
  # training images are close to the real test images.
  rows = records["evaluate"]["rows"]
  fd = records["evaluate"]["metric_name"]
  assert fd == "FD-fmnist"
  assert math.isfinite(rows["synthetic vs real test"][fd])
  assert rows["real train vs real test"][fd] < rows["synthetic vs real test"][fd]
  assert 0.0 <= records["evaluate"]["label_agreement"]["top1"] <= 1.0
  # report: Markdown, self-contained HTML, plots, numbers.
  report_dir = pathlib.Path(records["report"]["html"]).parent
  html = (report_dir / "report.html").read_text()
  assert "data:image/png;base64," in html and "Sandal" in html
  assert (report_dir / "plots" / "samples.png").stat().st_size > 1000
  results = json.loads((report_dir / "results.json").read_text())
  assert results["classifiers"]["real"]["top1"] == trained["real"]["top1"]
  assert list(results["classifiers"]) == ["real", "synthetic", "real+synthetic"]
  assert any("Synthetic-only" in line for line in results["summary"])
  # How long the classifiers trained, so a recorded number can be reproduced.
  assert (results["provenance"]["classifier training"]
          == "small_cnn_tiny, 100 steps of batch 16")
  markdown = (report_dir / "report.md").read_text()
  assert "FD-fmnist: Fréchet distance" in markdown  # Named once, not "FD-fmnist: FD-".
  assert "FD-fmnist: FD-fmnist" not in markdown

  # Unchanged inputs: everything is skipped; --from_stage re-runs the tail.
  log = _run(workdir)
  assert log.count("complete, skipped") == 7
  assert _markers(workdir) == after
  log = _run(workdir, "--from_stage=report")
  assert log.count("complete, skipped") == 6
  assert _markers(workdir)["07_report"]["finished"] >= after["07_report"]["finished"]

  # Another real+synthetic mix (a quarter of every batch synthetic, an epoch a pass
  # over the real data): only that classifier is trained, from scratch, in its folder.
  log = _run(workdir, "--config.mixed.mix=ratio",
             "--config.mixed.synthetic_fraction=0.25")
  mixed = _markers(workdir)["05_classifiers"]["outputs"]
  assert mixed["real+synthetic"]["workdir"].endswith("real_plus_synthetic_ratio0.25")
  assert trained["real+synthetic"]["workdir"].endswith("real_plus_synthetic_concat")
  assert log.count("already trained and evaluated, kept") == 2
  assert "resumed from step" not in log
  assert mixed["real"] == trained["real"] and mixed["synthetic"] == trained["synthetic"]
  assert mixed["real+synthetic"]["num_train"] == round(1000 * 16 / 12)

  # The union again, with only the synthetic images the real-only classifier gives
  # ≥ 0.3 of their class: the kept indices are exactly those, and only they train.
  log = _run(workdir, "--config.mixed.min_confidence=0.3")
  filtered = _markers(workdir)["05_classifiers"]["outputs"]["real+synthetic"]
  kept = filtered["synthetic_filter"]
  assert filtered["workdir"].endswith("real_plus_synthetic_concat_filter0.3")
  keep = np.load(workdir / "05_classifiers" / "synthetic_keep_0.3.npy")
  assert kept["of"] == 60 and kept["kept"] == len(keep) < 60
  assert sum(kept["kept_per_class"]) == len(keep)
  assert filtered["num_train"] == 1000 + len(keep)
  assert f"({len(keep)} of 60: real-only classifier confidence ≥ 0.3)" in (
      filtered["train_data"])
  cfg = classifiers_stage.run_config(fashion.get_config("ci"), "real", *(
      _markers(workdir)[s]["outputs"] for s in ("01_real_data", "04_build")))
  trainer = classifier_trainer.Trainer(
      classifier_models.build(cfg.model), cfg,
      classifier_data.make_train_data(cfg.data, cfg.batch_size, cfg.seed))
  synthetic_source = classifier_data.open_source(
      f"{_markers(workdir)['04_build']['outputs']['folder']}:train")
  probs, labels = trainer.probabilities(
      classifier_trainer.load_classifier(trained["real"]["workdir"])[1],
      synthetic_source, classifier_data.crops(cfg.data)[1])
  np.testing.assert_array_equal(
      keep, np.flatnonzero(probs[np.arange(60), labels] >= 0.3))

  # Back to the ratio mix: every classifier, its own included, is found trained.
  log = _run(workdir, "--config.mixed.mix=ratio",
             "--config.mixed.synthetic_fraction=0.25")
  assert log.count("already trained and evaluated, kept") == 3
  assert _markers(workdir)["05_classifiers"]["outputs"] == mixed

  # Pretraining, then the real data: the real+synthetic classifier starts from the
  # synthetic-only one's weights and trains on the real images alone.
  log = _run(workdir, "--config.mixed.mix=pretrain")
  pretrained = _markers(workdir)["05_classifiers"]["outputs"]["real+synthetic"]
  assert pretrained["workdir"].endswith("real_plus_synthetic_pretrain")
  assert f"initialised from {trained['synthetic']['workdir']}" in log
  assert log.count("already trained and evaluated, kept") == 2
  assert pretrained["num_train"] == pretrained["num_real"] == 1000
  assert pretrained["steps"] == trained["real"]["steps"]
  assert pretrained["train_data"].startswith(trained["real"]["train_data"] +
                                             ", starting from the synthetic-only")
  recorded = json.loads(
      (pathlib.Path(pretrained["workdir"]) / classifiers_stage.RUN_CONFIG).read_text())
  assert recorded["init_from"] == trained["synthetic"]["workdir"]
  assert recorded["data"]["synthetic"] == "" and recorded["data"]["mix"] == "real"

  # Distillation: the ratio mix with soft targets from the real-only classifier, and
  # its control, the real images alone with the same targets.
  log = _run(workdir, "--config.mixed.mix=ratio",
             "--config.mixed.synthetic_fraction=0.25", "--config.mixed.distill=0.5",
             "--config.mixed.distill_temperature=2")
  outputs = _markers(workdir)["05_classifiers"]["outputs"]
  distilled, control = outputs["real+synthetic"], outputs["real (distilled)"]
  assert distilled["workdir"].endswith("real_plus_synthetic_ratio0.25_distill0.5t2")
  assert control["workdir"].endswith(os.sep + "real_distill0.5t2")
  assert log.count("already trained and evaluated, kept") == 2
  assert control["num_train"] == control["num_real"] == 1000
  assert control["steps"] == trained["real"]["steps"]
  assert distilled["steps"] == mixed["real+synthetic"]["steps"]
  teacher = {role: np.load(workdir / "05_classifiers" / f"teacher_{role}.npy")
             for role in ("real", "synthetic")}
  assert teacher["real"].shape == (1000, 10)
  np.testing.assert_allclose(teacher["synthetic"], probs, rtol=1e-5, atol=1e-7)
  for run, roles in ((distilled, ("real", "synthetic")), (control, ("real",))):
    data = json.loads((pathlib.Path(run["workdir"]) / classifiers_stage.RUN_CONFIG
                       ).read_text())["data"]
    assert (data["teacher_weight"], data["teacher_temperature"]) == (0.5, 2.0)
    assert [r for r in ("real", "synthetic") if f"{r}_teacher" in data] == list(roles)
    assert "0.5 × the real-only classifier's probabilities at temperature 2" in (
        run["train_data"])
  report = json.loads((workdir / "07_report" / "results.json").read_text())
  assert report["classifiers"]["real (distilled)"]["top1"] == control["top1"]
  assert report["comparisons"]["real+synthetic − real (distilled) top-1 (points)"] == (
      round(100 * (distilled["top1"] - control["top1"]), 2))
  assert any(line.startswith("With the same soft targets on the real images alone")
             for line in report["summary"])

  # An ensemble teacher: the mean of the real-only classifier's probabilities and
  # those of another real-only classifier trained at the next seed.
  log = _run(workdir, "--config.mixed.mix=ratio",
             "--config.mixed.synthetic_fraction=0.25", "--config.mixed.distill=0.5",
             "--config.mixed.distill_temperature=2", "--config.mixed.distill_teachers=2")
  outputs = _markers(workdir)["05_classifiers"]["outputs"]
  assert sorted(outputs) == sorted(["real", "synthetic", "real (seed 1)",
                                    "real+synthetic", "real (distilled)"])
  assert log.index("real (seed 1)") < log.index("classifier 4/5: real+synthetic")
  member = outputs["real (seed 1)"]
  assert member["workdir"].endswith(os.sep + "real_seed1")
  assert member["steps"] == trained["real"]["steps"]
  assert json.loads((pathlib.Path(member["workdir"]) / classifiers_stage.RUN_CONFIG
                     ).read_text())["seed"] == 1
  assert outputs["real+synthetic"]["workdir"].endswith("_distill0.5t2_teachers2")
  assert outputs["real (distilled)"]["workdir"].endswith(
      os.sep + "real_distill0.5t2_teachers2")
  assert log.count("already trained and evaluated, kept") == 2  # real, synthetic.
  member_probs, _ = trainer.probabilities(
      classifier_trainer.load_classifier(member["workdir"])[1], synthetic_source,
      classifier_data.crops(cfg.data)[1])
  ensemble = np.load(workdir / "05_classifiers" / "teachers2_synthetic.npy")
  np.testing.assert_allclose(ensemble, (probs + member_probs) / 2, rtol=1e-5,
                             atol=1e-7)
  assert not np.allclose(member_probs, probs)  # Another seed, another classifier.
  data = json.loads((pathlib.Path(outputs["real+synthetic"]["workdir"]) /
                     classifiers_stage.RUN_CONFIG).read_text())["data"]
  assert data["synthetic_teacher"].endswith("teachers2_synthetic.npy")
  assert "the mean of 2 real-only classifiers' (seeds 0, 1) probabilities" in (
      outputs["real+synthetic"]["train_data"])


def test_imagenet_config_names_everything_missing():
  found = workflow.missing(imagenet.get_config("1024x_4x"))
  text = "\n".join(found)
  assert len(found) == 5, text
  for needed in ("imagenet2012", "diffusion", "super-resolution stage 1",
                 "super-resolution stage 2", "Inception"):
    assert needed in text


def test_base_only_imagenet_config_needs_no_sr_models():
  config = imagenet.get_config("64x_1x")
  assert not config.generate.sr_stages
  assert not any("super-resolution" in m for m in workflow.missing(config))


def test_missing_fashion_mnist_is_named(tmp_path, monkeypatch):
  config = fashion.get_config("ci")
  config.real.dir = str(tmp_path)
  found = workflow.missing(config)
  assert len(found) == 1 and "dataset-fashion-mnist" in found[0]


def test_bad_real_plus_synthetic_mix_is_named_before_running():
  config = fashion.get_config("ci")
  config.mixed.mix = "interleave"
  assert "one of ('concat', 'ratio', 'pretrain')" in workflow.missing(config)[0]
  config.mixed.update(mix="ratio", synthetic_fraction=0.3)  # 4.8 of a batch of 16.
  assert "use k/16" in workflow.missing(config)[0]
  config.mixed.synthetic_fraction = 0.25
  assert workflow.missing(config) == []
  config.mixed.min_confidence = 1.5
  assert "not a probability" in workflow.missing(config)[0]
  config.mixed.min_confidence = 0.9
  config.conditions = ("real+synthetic", "real")
  assert "list 'real' before 'real+synthetic'" in workflow.missing(config)[0]
  config.mixed.mix = "pretrain"
  assert "no synthetic images to filter" in workflow.missing(config)[0]
  config.mixed.min_confidence = 0.0
  config.conditions = ("real", "real+synthetic", "synthetic")
  assert "list 'synthetic' before 'real+synthetic'" in workflow.missing(config)[0]
  config.mixed.update(mix="concat", distill=1.5)
  assert "not a weight in [0, 1]" in workflow.missing(config)[0]
  config.mixed.update(distill=0.5, distill_temperature=0.0)
  assert "temperature > 0" in workflow.missing(config)[0]
  config.mixed.distill_temperature = 2.0
  assert workflow.missing(config) == []
  config.mixed.distill_teachers = 0
  assert "not a number of teachers" in workflow.missing(config)[0]
  config.mixed.distill_teachers = 2
  assert workflow.missing(config) == []
  config.conditions = ("synthetic", "real+synthetic")
  assert "config.mixed.distill learns from" in workflow.missing(config)[0]


def test_a_multiplier_the_tfds_builder_lacks_is_named_before_generating():
  config = fashion.get_config("ci")
  config.generate.plan.multiplier = "0.3"
  found = workflow.missing(config)
  assert len(found) == 1 and "multiplier=0.3" in found[0] and "'0.25'" in found[0]


def test_full_trains_its_classifiers_to_convergence_and_demo_keeps_20_epochs():
  # results/data_scaling.json: 60 epochs is where the real-only classifier stops
  # gaining; the demo's numbers were recorded at 20.
  assert fashion.get_config("full").classifier.epochs == 60
  assert fashion.get_config("demo").classifier.epochs == 20
  assert (report_stage.classifier_length(fashion.get_config("full").classifier)
          == "small_cnn, 60 epochs of batch 256")


def test_unknown_variants_are_refused():
  with pytest.raises(ValueError, match="choose one of"):
    fashion.get_config("tiny")
  with pytest.raises(ValueError, match="1024x_4x"):
    imagenet.get_config("512x_1x")


def test_classifier_folders_per_mix_and_changed_config_starts_afresh(tmp_path):
  mixed = fashion.get_config("ci").mixed
  assert classifiers_stage.mix_name(mixed) == "concat"
  mixed.update(mix="ratio", synthetic_fraction=0.25, min_confidence=0.9)
  assert classifiers_stage.mix_name(mixed) == "ratio0.25_filter0.9"
  mixed.update(distill=0.5, distill_temperature=2.0)
  assert classifiers_stage.mix_name(mixed) == "ratio0.25_filter0.9_distill0.5t2"
  assert classifiers_stage.synthetic_keep_file(0.9) == "synthetic_keep_0.9.npy"

  # A run folder keeps its checkpoints while its config is the same, and loses them
  # (they belong to another recipe or data) when the config changes.
  cfg = fashion.get_config("ci").classifier
  workdir = tmp_path / "real"
  classifiers_stage._start_or_resume(cfg, str(workdir))
  (workdir / "checkpoint").write_text("step 10")
  classifiers_stage._start_or_resume(cfg, str(workdir))
  assert (workdir / "checkpoint").exists()
  cfg.seed += 1
  classifiers_stage._start_or_resume(cfg, str(workdir))
  assert not (workdir / "checkpoint").exists()
  recorded = json.loads((workdir / classifiers_stage.RUN_CONFIG).read_text())
  assert recorded["seed"] == cfg.seed
  # The log names what changed, so a discarded run is never a mystery.
  assert classifiers_stage._changed_keys(
      {"seed": 0, "data": {"mix": "ratio", "real": "a"}},
      {"seed": 1, "data": {"mix": "ratio", "real": "b", "keep": "k"}}) == [
          "data.keep", "data.real", "seed"]
