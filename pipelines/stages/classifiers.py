"""Stage `classifiers`: one classifier per training-data condition (real only,
synthetic only, real + synthetic), the same recipe for each, every one evaluated on
the real test split.

Conditions map to the classifier job's data mixes: "real", "synthetic" and
"real+synthetic", whose mix is the config's `mixed.mix`: "concat" (an epoch is a pass
over the union, paper Table 4) or "ratio" (`mixed.synthetic_fraction` of every batch
synthetic, an epoch a pass over the real data). Each run lives in
`<stage>/<condition>/` with the config it trains (run_config.json) and resumes from its
checkpoints; a finished run (its eval.json at the last step) is not redone, and a run
whose config changed starts afresh.
"""
import json
import os
import shutil

from absl import logging

from synthfactory.models import classifiers as classifier_models
from synthfactory.pipelines import runner
from synthfactory.pipelines.stages import common
from synthfactory.training import classifier_data
from synthfactory.training import classifier_trainer

CONDITIONS = ("real", "synthetic", "real+synthetic")
MIXED = ("concat", "ratio")
RUN_CONFIG = "run_config.json"


def missing(config):
  """Problems of the real+synthetic mix, found before any stage runs."""
  if "real+synthetic" not in config.conditions:
    return []
  mix, fraction = config.mixed.mix, config.mixed.synthetic_fraction
  batch = config.classifier.batch_size
  if mix not in MIXED:
    return [f"config.mixed.mix={mix!r} is not a way to mix real and synthetic data; "
            f"set it to one of {MIXED}."]
  if mix == "ratio" and not (0 < fraction < 1 and float(fraction * batch).is_integer()):
    return [f"config.mixed.synthetic_fraction={fraction} must be strictly between 0 "
            f"and 1 and a whole number of the batch of {batch}: use k/{batch}."]
  return []


def run_config(config, condition, real, build):
  """The classifier job config of one condition."""
  if condition not in CONDITIONS:
    raise ValueError(f"Unknown classifier condition {condition!r}; choose from "
                     f"{CONDITIONS}.")
  cfg = config.classifier.copy_and_resolve_references()
  mix = condition
  if condition == "real+synthetic":  # Checked by missing() before the run.
    mix = config.mixed.mix
    cfg.data.synthetic_fraction = config.mixed.synthetic_fraction
  cfg.data.update(
      real=f"{real['name']}:{config.real.train_split}" if mix != "synthetic" else "",
      synthetic=f"{build['folder']}:train" if mix != "real" else "",
      eval=f"{real['name']}:{config.real.test_split}",
      mix=mix, data_dir=real["data_dir"])
  return cfg


def _start_or_resume(cfg, workdir):
  """Keeps a workdir whose run trains `cfg`; one made for another config is removed
  (its checkpoints and eval.json belong to a different recipe or data)."""
  wanted = common.plain(cfg)
  path = os.path.join(workdir, RUN_CONFIG)
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) == wanted:
        return
    logging.info("%s: its classifier config changed, training it afresh", workdir)
    shutil.rmtree(workdir)
  elif os.path.isdir(workdir):
    shutil.rmtree(workdir)  # From before configs were recorded: unknown recipe.
  os.makedirs(workdir)
  with open(path + ".tmp", "w") as f:
    json.dump(wanted, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)


def train(cfg, workdir):
  """Trains (or resumes) one run; returns (its eval.json, real examples, examples an
  epoch)."""
  data = classifier_data.make_train_data(cfg.data, cfg.batch_size, cfg.seed)
  _start_or_resume(cfg, workdir)
  trainer = classifier_trainer.Trainer(classifier_models.build(cfg.model), cfg, data)
  eval_file = os.path.join(workdir, classifier_trainer.EVAL_FILE)
  if os.path.exists(eval_file):
    with open(eval_file) as f:
      done = json.load(f)
    if done.get("step") == trainer.num_steps:
      logging.info("%s: already trained and evaluated, kept", workdir)
      return done, len(data.sources.get("real", [])), data.epoch_size
  eval_source = classifier_data.open_source(cfg.data.eval, cfg.data.data_dir,
                                            cfg.data.cache_mb)
  trainer.fit(workdir, eval_source, classifier_data.crops(cfg.data)[1])
  with open(eval_file) as f:
    return json.load(f), len(data.sources.get("real", [])), data.epoch_size


def make(config):

  def inputs():
    return {"classifier": common.plain(config.classifier),
            "conditions": list(config.conditions),
            "mixed": common.plain(config.mixed),
            "splits": [config.real.train_split, config.real.test_split]}

  def run(stage_dir, upstream):
    results = {}
    for i, condition in enumerate(config.conditions):
      cfg = run_config(config, condition, upstream["real_data"], upstream["build"])
      workdir = os.path.join(stage_dir, condition.replace("+", "_plus_"))
      logging.info("classifier %d/%d: %s (train %s)", i + 1, len(config.conditions),
                   condition, " + ".join(s for s in (cfg.data.real, cfg.data.synthetic)
                                         if s))
      got, num_real, num_train = train(cfg, workdir)
      train_data = [cfg.data.real] if cfg.data.real else []
      if cfg.data.synthetic:
        train_data.append(f"{upstream['build']['tfds_name']}:train")
      results[condition] = {
          "workdir": workdir, "train_data": " + ".join(train_data),
          "num_train": int(num_train), "num_real": int(num_real),
          "steps": got["step"], "top1": got["top1"], "top5": got["top5"], "per_class": list(got["per_class"].values()),
          "class_names": list(got["per_class"])}
    return results

  return runner.Stage("classifiers", run, inputs)
