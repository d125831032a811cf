"""How much do the classifier comparisons move with the training seed alone?

Command: .venv/bin/python results/seed_spread.py --workdir=<a finished fashion
    workflow run> [--seeds=1,2] [--conditions=real,real+synthetic]
    [--mix=concat|ratio:f]
→ results/seed_spread.json: one record per (workdir, real+synthetic mix, classifier
recipe); a rerun of the same three replaces its record, others are kept.

The goal "real+synthetic ≥ real-only + 0.3 points" compares two single training runs.
This retrains the classifiers of a finished workflow run (same data, same recipe: its
classifiers stage's configs) with other seeds, which change the initialisation and
the data order, and reports each condition's top-1 per seed, mean and spread, and the
real+synthetic minus real-only difference per seed. The runs at the config's own
seed are the workflow's; with a --mix other than the run's own, the real+synthetic
classifier is trained at that seed too. A filtered run keeps its filter (the same
kept images at every seed; the record's mix says "+filter:p"), a distilled one its
teacher's targets (the workflow's real-only classifier's; "+distill:w", and the
control is the condition "real (distilled)"). Runs go to
<workdir>/seed_spread/<condition>[_<mix>]_seed<k>/ and resume.
"""
import argparse
import datetime
import json
import pathlib
import statistics
import sys

from absl import logging
import ml_collections

from synthfactory.pipelines import machine
from synthfactory.pipelines.stages import classifiers
from synthfactory.pipelines.stages import report

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "seed_spread.json"


def stage_outputs(workdir, stage):
  marker = next(pathlib.Path(workdir).glob(f"*_{stage}/COMPLETE.json"), None)
  if marker is None:
    raise SystemExit(f"{workdir} has no finished {stage} stage: give the workdir of a "
                     "finished workflow run.")
  return json.loads(marker.read_text())["outputs"]


def mix_name(data):
  """A classifier data config's real+synthetic mix as "concat" or "ratio:f"."""
  return data["mix"] + (f":{data['synthetic_fraction']:g}" if data["mix"] == "ratio"
                        else "")


def mix_label(data, outputs):
  """The mix as recorded: mix_name, plus "+filter:p" when only the synthetic images
  the workflow's real-only classifier gave ≥ p of their class were used."""
  label = mix_name(data)
  if data.get("synthetic_keep"):
    label += f"+filter:{outputs['synthetic_filter']['min_confidence']:g}"
  return label + _distill_label(data)


def _teachers(data):
  """How many real-only classifiers a distilled run's teacher averages."""
  return classifiers.teachers_of(data.get("real_teacher", ""))


def _distill_label(data):
  """"+distill:w+temperature:T" (and "+teachers:N") for a run on soft targets, else
  ""."""
  if not data.get("teacher_weight"):
    return ""
  teachers = _teachers(data)
  return (f"+distill:{data['teacher_weight']:g}+temperature:"
          f"{data['teacher_temperature']:g}"
          + (f"+teachers:{teachers}" if teachers > 1 else ""))


def run_name(condition, data, tag, seed):
  """A retrained run's folder: the condition, its soft targets if any, mix, seed."""
  name = ("real" if condition == classifiers.DISTILLED_CONTROL
          else condition.replace("+", "_plus_"))
  if data.get("teacher_weight"):  # Beside, not over, the same mix's plain runs.
    name += f"_distill{data['teacher_weight']:g}t{data['teacher_temperature']:g}"
    if _teachers(data) > 1:  # Nor over the one-teacher runs.
      name += f"_teachers{_teachers(data)}"
  return f"{name}{tag}_seed{seed}"


def with_mix(base, mix):
  """`base` (a real+synthetic run config) with its mix set from "concat"/"ratio:f"."""
  name, _, fraction = mix.partition(":")
  if name not in ("concat", "ratio") or (name == "ratio") != bool(fraction):
    raise SystemExit(f"--mix={mix!r}: give concat or ratio:f (f the synthetic share "
                     "of every batch, e.g. ratio:0.25).")
  if base.get("init_from"):  # Its data is the real images alone.
    raise SystemExit("--mix: the workflow's real+synthetic run is pretrain (synthetic,"
                     " then real), which has no mix to change; run the workflow with "
                     "--config.mixed.mix=concat or ratio first.")
  cfg = ml_collections.ConfigDict(base.to_dict())  # A copy: nested dicts too.
  cfg.data.mix, cfg.data.synthetic_fraction = name, float(fraction or 0.0)
  return cfg


def spread(workdir, conditions, seeds, mix):
  """Top-1 by condition and seed: the workflow's own runs plus retrained ones; the
  real+synthetic mix; the recipe, e.g. "small_cnn, 60 epochs of batch 256"."""
  done = stage_outputs(workdir, "classifiers")
  top1, mixes, recipes = {}, {}, set()
  for condition in conditions:
    base = ml_collections.ConfigDict(json.loads(
        (pathlib.Path(done[condition]["workdir"]) / classifiers.RUN_CONFIG).read_text()))
    runs, tag = seeds, ""
    top1[condition] = {}
    recipes.add(report.classifier_length(base))
    wanted = with_mix(base, mix) if condition == "real+synthetic" and mix else base
    if mix_name(wanted.data) != mix_name(base.data):  # "ratio:.25" is "ratio:0.25".
      base, tag = wanted, "_" + mix_name(wanted.data).replace(":", "")
      # The workflow's own run used another mix: train its seed too, once.
      runs = list(dict.fromkeys([base.seed, *seeds]))
    else:
      top1[condition][base.seed] = done[condition]["top1"]
    if condition == "real+synthetic":
      mixes[condition] = mix_label(base.data, done[condition])
    for seed in runs:
      cfg = ml_collections.ConfigDict(base.to_dict())
      cfg.seed = seed
      name = run_name(condition, cfg.data, tag, seed)
      logging.info("%s, seed %d → %s", condition, seed, workdir / "seed_spread" / name)
      top1[condition][seed] = classifiers.train(
          cfg, str(workdir / "seed_spread" / name))[0]["top1"]
  return top1, mixes.get("real+synthetic"), ", or ".join(sorted(recipes))


def summarise(top1):
  summary = {c: {"top1_by_seed": {str(k): v for k, v in sorted(runs.items())},
                 "mean": statistics.mean(runs.values()),
                 "stdev": statistics.stdev(runs.values()) if len(runs) > 1 else 0.0}
             for c, runs in top1.items()}
  if {"real", "real+synthetic"} <= set(top1):
    summary["real+synthetic_minus_real_points_by_seed"] = {
        str(k): round(100 * (top1["real+synthetic"][k] - top1["real"][k]), 2)
        for k in sorted(top1["real"]) if k in top1["real+synthetic"]}
  return summary


def save(record):
  """Adds `record` to OUTPUT's records, replacing one of the same workdir, mix and
  classifier recipe (a rerun with a longer recipe keeps the shorter one's record)."""
  records = json.loads(OUTPUT.read_text())["records"] if OUTPUT.exists() else []
  key = lambda r: (r["workdir"], r.get("real+synthetic_mix"),
                   r.get("classifier_training"))
  records = [r for r in records if key(r) != key(record)] + [record]
  OUTPUT.write_text(json.dumps({"records": records}, indent=1) + "\n")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--seeds", default="1,2")
  parser.add_argument("--conditions", default="real,real+synthetic")
  parser.add_argument("--mix", default="",
                      help="real+synthetic mix (concat or ratio:f); default the run's")
  args = parser.parse_args()
  logging.set_verbosity(logging.INFO)
  workdir = pathlib.Path(args.workdir).absolute()
  top1, mix, recipe = spread(workdir, args.conditions.split(","),
                             [int(s) for s in args.seeds.split(",")], args.mix)
  summary = summarise(top1)
  save({"workdir": str(workdir), "real+synthetic_mix": mix,
        "classifier_training": recipe, "summary": summary,
        "command": " ".join([".venv/bin/python results/seed_spread.py",
                             *sys.argv[1:]]),
        "machine": machine.describe(), "date": datetime.date.today().isoformat()})
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  main()
