"""How much do the classifier comparisons move with the training seed alone?

Command: .venv/bin/python results/seed_spread.py --workdir=<a finished fashion
    workflow run> [--seeds=1,2] [--conditions=real,real+synthetic]
→ results/seed_spread.json.

The goal "real+synthetic ≥ real-only + 0.3 points" compares two single training runs.
This retrains the classifiers of a finished workflow run (same data, same recipe: its
classifiers stage's configs) with other seeds, which change the initialisation and
the data order, and reports each condition's top-1 per seed, mean and spread, and the
real+synthetic minus real-only difference per seed. The runs at the config's own
seed are the workflow's. Runs go to <workdir>/seed_spread/<condition>_seed<k>/ and resume.
"""
import argparse
import datetime
import json
import pathlib
import statistics
import sys

from absl import logging
import ml_collections

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "seed_spread.json"
sys.path.insert(0, str(ROOT / "results"))

from embedded_full import machine  # pylint: disable=g-import-not-at-top,wrong-import-position
from synthfactory.pipelines.stages import classifiers  # pylint: disable=g-import-not-at-top,wrong-import-position


def stage_outputs(workdir, stage):
  marker = next(pathlib.Path(workdir).glob(f"*_{stage}/COMPLETE.json"), None)
  if marker is None:
    raise SystemExit(f"{workdir} has no finished {stage} stage: give the workdir of a "
                     "finished workflow run.")
  return json.loads(marker.read_text())["outputs"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--seeds", default="1,2")
  parser.add_argument("--conditions", default="real,real+synthetic")
  args = parser.parse_args()
  logging.set_verbosity(logging.INFO)
  workdir = pathlib.Path(args.workdir).absolute()
  done = stage_outputs(workdir, "classifiers")
  top1 = {}
  for condition in args.conditions.split(","):
    base = json.loads((pathlib.Path(done[condition]["workdir"]) /
                       classifiers.RUN_CONFIG).read_text())
    top1[condition] = {base["seed"]: done[condition]["top1"]}   # The workflow's run.
    for seed in (int(s) for s in args.seeds.split(",")):
      cfg = ml_collections.ConfigDict(base)
      cfg.seed = seed
      run = workdir / "seed_spread" / f"{condition.replace('+', '_plus_')}_seed{seed}"
      logging.info("%s, seed %d → %s", condition, seed, run)
      top1[condition][seed] = classifiers.train(cfg, str(run))[0]["top1"]
  summary = {c: {"top1_by_seed": {str(k): v for k, v in runs.items()},
                 "mean": statistics.mean(runs.values()),
                 "stdev": statistics.stdev(runs.values()) if len(runs) > 1 else 0.0}
             for c, runs in top1.items()}
  if {"real", "real+synthetic"} <= set(top1):
    summary["real+synthetic_minus_real_points_by_seed"] = {
        str(k): round(100 * (top1["real+synthetic"][k] - top1["real"][k]), 2)
        for k in top1["real"]}
  result = {"workdir": str(workdir), "summary": summary,
            "command": " ".join([".venv/bin/python results/seed_spread.py",
                                 *sys.argv[1:]]),
            "machine": machine(), "date": datetime.date.today().isoformat()}
  OUTPUT.write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  main()
