"""How much can more real-like data help the embedded classifier at all?

Command: .venv/bin/python results/data_scaling.py --workdir=<scratch folder>
    [--images=30000,60000] [--epochs=10,20] [--seeds=0]
→ results/data_scaling.json (a rerun adds its grid's rows, replacing those of the same
N, E and seed, and appends its command to the record's)

The 1x goal asks real+synthetic to beat real-only by 0.3 points. This measures the
headroom that goal has: the workflow's real-only recipe (pipelines/configs/fashion.py
`full`: training/configs/classifier.py:fashion at E epochs; `full` itself trains the
count where this grid's 60,000-image rows stop gaining, 60) trained on the first N
real training images for E epochs, every (N, E) of the grid.
Comparing N at equal optimizer steps (30,000 images x 20 epochs against 60,000 x 10)
says what doubling the data adds when the steps do not change, which is the most a
perfect synthetic copy of the real distribution could add under `ratio` mixing;
comparing E at equal N says what the extra steps alone add, which `concat` (an epoch
over the union, twice the steps at 1x) also gets. Each run also records its training
accuracy (the mean of the logged training-batch accuracies of its last epoch,
augmented as in training): a classifier whose training accuracy is no higher than its
test accuracy is limited by its capacity or steps, not by its data. Runs go to
<workdir>/real_<N>_<E>ep[_seed<k>]/ and resume; finished ones are kept. --seeds
retrains every cell at other training seeds (rows with their "seed"; the headroom
compares the recipe's own seed, 0).
"""
import argparse
import datetime
import json
import pathlib
import statistics
import sys

from absl import logging

from synthfactory.pipelines import machine
from synthfactory.pipelines.configs import fashion
from synthfactory.pipelines.stages import classifiers
from synthfactory.training import progress

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "data_scaling.json"

REAL_TRAIN = 60_000


def real_only_config(images, epochs):
  """The `full` workflow's real-only classifier on the first `images` real images."""
  cfg = fashion.get_config("full").classifier
  if not 0 < images <= REAL_TRAIN:
    raise SystemExit(f"--images={images}: give 1..{REAL_TRAIN} real training images.")
  if epochs < 1:
    raise SystemExit(f"--epochs={epochs}: give at least one epoch.")
  split = "train" if images == REAL_TRAIN else f"train[:{images}]"
  cfg.data.update(real=f"fashion_mnist_idx:{split}", mix="real", synthetic="",
                  eval="fashion_mnist_idx:test")
  cfg.epochs = epochs
  return cfg


def last_epoch_train_accuracy(workdir, steps_per_epoch):
  """Mean logged training-batch accuracy over the run's last epoch."""
  rows = [r for r in progress.read_metrics(workdir) if "accuracy" in r]
  last = rows[-1]["step"]
  return statistics.mean(r["accuracy"] for r in rows
                         if r["step"] > last - steps_per_epoch)


def run(workdir, images, epochs, seed=0):
  cfg = real_only_config(images, epochs)
  cfg.seed = seed  # Initialisation and data order; 0 is the recipe's own.
  run_dir = pathlib.Path(workdir) / (f"real_{images}_{epochs}ep"
                                     + (f"_seed{seed}" if seed else ""))
  logging.info("%d real images, %d epochs, seed %d → %s", images, epochs, seed,
               run_dir)
  result, _, epoch_size = classifiers.train(cfg, str(run_dir))
  return {"images": images, "epochs": epochs, "seed": seed, "steps": result["step"],
          "top1": result["top1"],
          "train_accuracy_last_epoch": round(last_epoch_train_accuracy(
              run_dir, epoch_size // cfg.batch_size), 4),
          "machine": machine.describe()["processor"],
          "date": datetime.date.today().isoformat()}


def headroom(rows):
  """Differences in points between grid cells at equal steps and at equal data (the
  recipe's own seed, 0)."""
  by = {(r["images"], r["epochs"]): r["top1"] for r in rows if not r.get("seed")}
  out = {}
  for (n, e), top1 in by.items():
    if (2 * n, e // 2) in by and e % 2 == 0:
      out[f"{2 * n} images x {e // 2} epochs minus {n} x {e} (equal steps)"] = round(
          100 * (by[(2 * n, e // 2)] - top1), 2)
    if (n, 2 * e) in by:
      out[f"{n} images: {2 * e} epochs minus {e} (twice the steps)"] = round(
          100 * (by[(n, 2 * e)] - top1), 2)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--images", default="30000,60000")
  parser.add_argument("--epochs", default="10,20")
  parser.add_argument("--seeds", default="0", help="training seeds of every cell")
  args = parser.parse_args()
  logging.set_verbosity(logging.INFO)
  grid = [(int(n), int(e), int(k)) for n in args.images.split(",")
          for e in args.epochs.split(",") for k in args.seeds.split(",")]
  old = json.loads(OUTPUT.read_text()) if OUTPUT.exists() else {}
  for n, e, k in grid:  # Saved after every run: a long grid keeps what it finished.
    record = merge(old, [run(pathlib.Path(args.workdir).absolute(), n, e, k)],
                   " ".join([".venv/bin/python results/data_scaling.py",
                             *sys.argv[1:]]))
    OUTPUT.write_text(json.dumps(record, indent=1) + "\n")
    old = record
  print(json.dumps(old.get("headroom_points"), indent=1))


def merge(old, rows, command):
  """The record `old` with `rows` added (replacing its rows of the same images,
  epochs and seed, sorted by the three) and `command` appended to its commands."""
  by_cell = {(r["images"], r["epochs"], r.get("seed", 0)): r
             for r in [*old.get("rows", []), *rows]}
  rows = [by_cell[k] for k in sorted(by_cell)]
  commands = old.get("commands", [old["command"]] if "command" in old else [])
  return {"rows": rows, "headroom_points": headroom(rows),
          "classifier": "training/configs/classifier.py:fashion (small_cnn), the "
                        "`full` workflow's recipe at each row's epochs; top-1 on the "
                        "10,000 real test images",
          "commands": list(dict.fromkeys([*commands, command])),
          # Of the first grid; rows added later name their own.
          "machine": old.get("machine", machine.describe()),
          "date": old.get("date", datetime.date.today().isoformat())}


if __name__ == "__main__":
  main()
