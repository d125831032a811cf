"""Stage `report`: the run's findings as report.md, a self-contained report.html, PNG
plots, and results.json (the numbers alone, for tables such as
results/embedded_full.json)."""
import json
import os

import numpy as np
import tensorflow_datasets as tfds

import synthfactory
from synthfactory.pipelines import report as report_lib
from synthfactory.pipelines import runner
from synthfactory.pipelines.stages import classifiers as classifiers_stage

DISTILLED = classifiers_stage.DISTILLED_CONTROL


def examples_per_class(source, num_classes, k, max_records=None):
  """uint8 images [num_classes, k, H, W, C]: the first k records of each class in
  `source` (a TFDS data source). Classes with fewer than k are padded with zeros."""
  found = [[] for _ in range(num_classes)]
  limit = min(len(source), max_records or len(source))
  for i in range(limit):
    example = source[i]
    label = int(example["label"])
    if len(found[label]) < k:
      found[label].append(np.asarray(example["image"]))
      if all(len(f) == k for f in found):
        break
  shape = next(f[0].shape for f in found if f)
  return np.stack([np.stack(f + [np.zeros(shape, np.uint8)] * (k - len(f)))
                   for f in found])


def summary_lines(classifiers, evaluation):
  lines = []
  real = classifiers.get("real")
  if real and "synthetic" in classifiers:
    synth = classifiers["synthetic"]
    lines.append(f"Synthetic-only training reaches {synth['top1'] / real['top1']:.3f}× "
                 f"the real-only top-1 ({100 * synth['top1']:.2f}% vs "
                 f"{100 * real['top1']:.2f}%, {synth['num_train']} synthetic vs "
                 f"{real['num_train']} real images).")
  if real and "real+synthetic" in classifiers:
    delta = 100 * (classifiers["real+synthetic"]["top1"] - real["top1"])
    lines.append(f"Adding the synthetic images to the real ones changes top-1 by "
                 f"{delta:+.2f} points ({100 * real['top1']:.2f}% → "
                 f"{100 * classifiers['real+synthetic']['top1']:.2f}%).")
  control = classifiers.get(DISTILLED)
  if control and "real+synthetic" in classifiers:
    delta = 100 * (classifiers["real+synthetic"]["top1"] - control["top1"])
    lines.append(f"With the same soft targets on the real images alone "
                 f"({100 * control['top1']:.2f}%), adding the synthetic images changes "
                 f"top-1 by {delta:+.2f} points: their own share, net of the "
                 f"distillation's.")
  if evaluation:
    name, rows = evaluation["metric_name"], evaluation["rows"]
    if "synthetic vs real test" in rows and "real train vs real test" in rows:
      lines.append(f"{name} to the real test set: synthetic "
                   f"{rows['synthetic vs real test'][name]:.2f}, real training images "
                   f"{rows['real train vs real test'][name]:.2f} (the floor).")
    if "label_agreement" in evaluation:
      lines.append(f"The real-only classifier labels "
                   f"{100 * evaluation['label_agreement']['top1']:.1f}% of the "
                   "synthetic images as the class they were generated for.")
  return lines


def comparisons(classifiers):
  out, real = {}, classifiers.get("real")
  if real and "synthetic" in classifiers:
    out["synthetic / real top-1"] = round(classifiers["synthetic"]["top1"]
                                          / real["top1"], 4)
  if real and "real+synthetic" in classifiers:
    out["real+synthetic − real top-1 (points)"] = round(
        100 * (classifiers["real+synthetic"]["top1"] - real["top1"]), 2)
  if DISTILLED in classifiers and "real+synthetic" in classifiers:
    out[f"real+synthetic − {DISTILLED} top-1 (points)"] = round(
        100 * (classifiers["real+synthetic"]["top1"] - classifiers[DISTILLED]["top1"]),
        2)
  return out


def classifier_length(cfg):
  """How long each classifier trained, e.g. "small_cnn, 60 epochs of batch 256"
  (num_steps > 0 overrides epochs)."""
  length = f"{cfg.num_steps} steps" if cfg.num_steps else f"{cfg.epochs} epochs"
  return f"{cfg.model.name}, {length} of batch {cfg.batch_size}"


def make(config, workflow):
  """workflow: {"config": spec, "command": the command line, "workdir": its root}."""

  def inputs():
    return {"grid_per_class": config.report.grid_per_class,
            "title": config.report.title}

  def run(stage_dir, upstream):
    real, build = upstream["real_data"], upstream["build"]
    generated, trained = upstream["generate"], upstream["classifiers"]
    evaluation = upstream.get("evaluate")
    k = config.report.grid_per_class
    synthetic_source = tfds.builder_from_directory(build["folder"]).as_data_source(
        "train")
    real_source = tfds.data_source(real["name"], split=config.real.train_split,
                                   data_dir=real["data_dir"])
    names = real["class_names"]
    classifiers = {c: {"train_data": r["train_data"], "num_train": r["num_train"],
                       "top1": r["top1"], "top5": r["top5"],
                       "per_class": r["per_class"]}
                   for c, r in trained.items()}  # The conditions, and any control.
    results = {
        "title": config.report.title,
        "summary": summary_lines(classifiers, evaluation),
        "workflow": workflow,
        "scale": {"real training images": real["splits"].get(
                      config.real.train_split.split("[")[0]),
                  "real training images used": next(
                      (r["num_real"] for r in trained.values() if r["num_real"]), 0),
                  "synthetic images": generated["num_images"],
                  "plan multiplier": f"{generated['multiplier']}×",
                  "TFDS dataset": build["tfds_name"]},
        "classifiers": classifiers,
        "comparisons": comparisons(classifiers),
        "provenance": {
            "checkpoint": upstream["diffusion"]["checkpoint"],
            "checkpoint sha256": upstream["diffusion"]["sha256"],
            "sampler": generated["sampler"], "seed": generated["seed"],
            "manifest sha256": generated["manifest_sha256"],
            "classifier training": classifier_length(config.classifier),
            "code version": synthfactory.__version__},
    }
    if evaluation:
      results["fidelity"] = {
          "metric_name": evaluation["metric_name"],
          # The report prefixes the metric's name.
          "note": ("Fréchet distance (and Inception-style score) in the features of "
                   "the real-only classifier of this run, not FID."),
          "rows": evaluation["rows"]}
      if "label_agreement" in evaluation:
        results["comparisons"]["label agreement (real classifier on synthetic)"] = (
            round(evaluation["label_agreement"]["top1"], 4))
    paths = report_lib.write_report(
        stage_dir, results, class_names=names,
        synthetic_grid=examples_per_class(synthetic_source, len(names), k),
        real_grid=examples_per_class(real_source, len(names), k))
    with open(os.path.join(stage_dir, "results.json.tmp"), "w") as f:
      json.dump(results, f, indent=1, default=str)
    os.replace(os.path.join(stage_dir, "results.json.tmp"),
               os.path.join(stage_dir, "results.json"))
    return {"markdown": paths["markdown"], "html": paths["html"],
            "results": os.path.join(stage_dir, "results.json"),
            "summary": results["summary"]}

  return runner.Stage("report", run, inputs)
