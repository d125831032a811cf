"""Does a classifier with more capacity profit from the synthetic images?

Command: .venv/bin/python results/classifier_capacity.py --workflow=<full 1x workdir>
    --workdir=<scratch folder> [--models=small_cnn_w64,small_cnn]
    [--conditions=real,real+synthetic] [--mix=concat+filter:0.9]
→ results/classifier_capacity.json

results/data_scaling.json found the embedded classifier (small_cnn) limited by its
capacity under the recipe's augmentation (without it, it memorises the real images:
results/classifier_augmentation.py): doubling the *real* data at equal steps adds 0.21
points, and its training accuracy is barely above its test accuracy, so it has little
room to use extra images, real or synthetic. This retrains the `full` workflow's classifier stage
(pipelines/stages/classifiers.py, the same recipe, data, filter and mixes) with each
classifier of --models, on the real and synthetic data of a finished `full` run
(results/embedded_full.py's <workdirs>/fashion_full_1x: its 01_real_data and 04_build
stages), and tests each on the 10,000 real test images. The real+synthetic filter is
each model's own real-only classifier, as in the workflow. Each model's runs go to
<workdir>/<model>/ and resume; finished ones are kept.
"""
import argparse
import datetime
import json
import pathlib
import sys

from absl import logging

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "classifier_capacity.json"
sys.path.insert(0, str(ROOT / "results"))

from data_scaling import last_epoch_train_accuracy  # pylint: disable=g-import-not-at-top,wrong-import-position
from embedded_full import parse_mix  # pylint: disable=g-import-not-at-top,wrong-import-position
from synthfactory.models import classifiers as classifier_models  # pylint: disable=g-import-not-at-top,wrong-import-position
from synthfactory.pipelines import machine  # pylint: disable=g-import-not-at-top,wrong-import-position
from synthfactory.pipelines.configs import fashion  # pylint: disable=g-import-not-at-top,wrong-import-position
from synthfactory.pipelines.stages import classifiers  # pylint: disable=g-import-not-at-top,wrong-import-position
from synthfactory.training import progress  # pylint: disable=g-import-not-at-top,wrong-import-position


def stage_config(model, conditions, mix):
  """The `full` workflow's config with classifier `model`, only `conditions`, and the
  real+synthetic mix "concat" | "ratio:f", optionally "+filter:p"."""
  if model not in classifier_models.NAMES:
    raise SystemExit(f"--models: unknown classifier {model!r}; choose from "
                     f"{classifier_models.NAMES}.")
  unknown = [c for c in conditions if c not in classifiers.CONDITIONS]
  if unknown:
    raise SystemExit(f"--conditions: unknown {unknown}; choose from "
                     f"{classifiers.CONDITIONS}.")
  config = fashion.get_config("full")
  config.classifier.model.name = model
  config.conditions = tuple(conditions)
  config.mixed.update({field: value if field == "mix" else float(value)
                       for field, value in parse_mix(mix).items()})
  problems = classifiers.missing(config)
  if problems:
    raise SystemExit(f"--mix={mix}: " + " ".join(problems))
  return config


def finished_stage_outputs(workflow, stage):
  marker = pathlib.Path(workflow) / stage / "COMPLETE.json"
  if not marker.exists():
    raise SystemExit(f"{marker} is missing: --workflow must be a `full` workflow "
                     f"run whose {stage} stage finished (results/embedded_full.py).")
  return json.loads(marker.read_text())["outputs"]


def workflow_upstream(workflow):
  """The outputs of a finished `full` run that its classifier stage reads."""
  return {"real_data": finished_stage_outputs(workflow, "01_real_data"),
          "build": finished_stage_outputs(workflow, "04_build")}


def summarize(results, batch_size):
  """One model's row: top-1 per condition, its training accuracy and speed, and the
  real+synthetic minus real-only difference."""
  row = {"top1": {}, "train_accuracy_last_epoch": {}, "steps": {},
         "train_images_per_sec": {}, "per_class": {}}
  for condition, got in results.items():
    row["top1"][condition] = got["top1"]
    row["steps"][condition] = got["steps"]
    speeds = sorted(r["images_per_sec"] for r in progress.read_metrics(got["workdir"])
                    if "images_per_sec" in r)
    row["train_images_per_sec"][condition] = round(speeds[len(speeds) // 2])
    row["per_class"][condition] = dict(zip(got["class_names"], got["per_class"]))
    epoch_steps = got["num_train"] // batch_size
    row["train_accuracy_last_epoch"][condition] = round(
        last_epoch_train_accuracy(got["workdir"], epoch_steps), 4)
    if "synthetic_filter" in got:
      row["synthetic_kept"] = got["synthetic_filter"]["kept"]
  if {"real", "real+synthetic"} <= set(results):
    row["real_plus_synthetic_minus_real_points"] = round(
        100 * (results["real+synthetic"]["top1"] - results["real"]["top1"]), 2)
  return row


def parse_study_flags(doc, **options):
  """The command line of a study of a finished workflow's classifier stage: its
  --workflow and --workdir, the --conditions to train, and the study's own options
  (name=default)."""
  parser = argparse.ArgumentParser(description=doc.split("\n")[0])
  parser.add_argument("--workflow", required=True,
                      help="a finished `full` workflow workdir (fashion_full_1x)")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--conditions", default="real,real+synthetic")
  for name, default in options.items():
    parser.add_argument(f"--{name}", default=default)
  args = parser.parse_args()
  logging.set_verbosity(logging.INFO)
  return args


def write_record(output, upstream, replaced, **fields):
  """Writes a study of the `full` workflow's classifier stage, with what it replaced
  in the stage, the synthetic dataset, the command, machine and date, to `output`."""
  record = {
      **fields, "synthetic": upstream["build"]["tfds_name"],
      "recipe": f"pipelines/configs/fashion.py:full's classifier stage "
                f"(training/configs/classifier.py:fashion, 20 epochs), the {replaced} "
                f"replaced; top-1 on the 10,000 real test images",
      "command": " ".join([f".venv/bin/python results/{output.stem}.py",
                           *sys.argv[1:]]),
      "machine": machine.describe(), "date": datetime.date.today().isoformat()}
  output.write_text(json.dumps(record, indent=1) + "\n")


def main():
  args = parse_study_flags(__doc__, models="small_cnn_w64,small_cnn",
                           mix="concat+filter:0.9")
  upstream = workflow_upstream(args.workflow)
  conditions = args.conditions.split(",")
  configs = {m: stage_config(m, conditions, args.mix) for m in args.models.split(",")}
  rows = {}
  for model, config in configs.items():
    stage_dir = pathlib.Path(args.workdir).absolute() / model
    stage_dir.mkdir(parents=True, exist_ok=True)
    results = classifiers.make(config).run(str(stage_dir), upstream)
    rows[model] = {"parameters": classifier_models.count_params(
        classifier_models.build(config.classifier.model), (28, 28, 1)),
                   **summarize(results, config.classifier.batch_size)}
  write_record(OUTPUT, upstream, "model", rows=rows, mix=args.mix)
  print(json.dumps({m: {k: r.get(k) for k in ("top1", "real_plus_synthetic_minus_real_points")}
                    for m, r in rows.items()}, indent=1))


if __name__ == "__main__":
  main()
