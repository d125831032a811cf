"""Stage `evaluate`: how close the synthetic data is to the real data.

- FD and IS in the features of a domain classifier (config.evaluate.extractor, by
  default `fmnist:` the real-only classifier of the `classifiers` stage: FD-fmnist,
  never called FID), plus k-NN precision/recall, for the synthetic set against the
  real test split, and for the real training split against the same test split (the
  floor a perfect generator would reach at that sample size);
- label agreement: the real-only classifier's accuracy on the synthetic images, read
  against the labels they were generated for (per class too).
"""
import json
import os

from absl import logging

from synthfactory.evaluation import evaluate as evaluate_lib
from synthfactory.evaluation import feature_extractor
from synthfactory.evaluation import image_sets
from synthfactory.pipelines import runner
from synthfactory.pipelines.stages import classifiers as classifiers_stage
from synthfactory.pipelines.stages import common


def _label_agreement(config, upstream):
  """The real-only classifier evaluated on the synthetic set."""
  trainer, variables, synthetic, crop = classifiers_stage.real_classifier_on_synthetic(
      config, upstream, upstream["classifiers"]["real"]["workdir"])
  got = trainer.evaluate(variables, synthetic, crop)
  return {"top1": got["top1"], "per_class": list(got["per_class"].values())}


def missing(config):
  """The FID network's weights, when the extractor is Inception-v3."""
  name, _, arg = config.evaluate.extractor.partition(":")
  if name == "inception" and not os.path.exists(arg):
    return [f"evaluation: the FID Inception-v3 weights {arg or '(no path given)'} are "
            "not there; convert the PyTorch FID weights with `python -m synthfactory."
            "evaluation.convert_inception_weights` and set --config.evaluate.extractor"
            "=inception:<converted .npz>."]
  return []


def make(config):
  options = config.evaluate

  def inputs():
    return {"evaluate": common.plain(options)}

  def run(stage_dir, upstream):
    real, build = upstream["real_data"], upstream["build"]
    trained = upstream["classifiers"]
    if not options.extractor and "real" not in trained:
      raise ValueError("The evaluate stage's default extractor is the real-only "
                       "classifier: keep 'real' in config.conditions or set "
                       "config.evaluate.extractor.")
    extractor = feature_extractor.create(
        options.extractor or f"fmnist:{trained['real']['workdir']}")
    open_set = lambda spec: image_sets.open_image_set(spec, data_dir=real["data_dir"])
    test = open_set(f"{real['name']}:{config.real.test_split}")
    compared = {"synthetic vs real test": open_set(f"{build['folder']}:train"),
                "real train vs real test":
                    open_set(f"{real['name']}:{config.real.train_split}")}
    rows, details = {}, {}
    for row, image_set in compared.items():
      logging.info("%s: %s of %s (%d images) against %s (%d images)",
                   extractor.metric_name, row, image_set.description, len(image_set),
                   test.description, len(test))
      report = evaluate_lib.evaluate(
          image_set, test, extractor, cache_dir=os.path.join(stage_dir, "cache"),
          pr_samples=min(options.pr_samples, len(image_set), len(test)),
          is_splits=options.is_splits)
      rows[row] = report["metrics"]
      details[row] = {k: report[k] for k in ("counts", "generated", "reference")}
    results = {"metric_name": extractor.metric_name,
               "extractor": {"name": extractor.name, "identity": extractor.identity},
               "rows": rows}
    if "real" in trained:
      results["label_agreement"] = _label_agreement(config, upstream)
    with open(os.path.join(stage_dir, "evaluation.json"), "w") as f:
      json.dump({**results, "details": details}, f, indent=1, default=str)
    return results

  return runner.Stage("evaluate", run, inputs)
