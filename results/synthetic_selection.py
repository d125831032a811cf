"""Which synthetic images help a real+synthetic classifier: the easy or the hard ones?

Command: .venv/bin/python results/synthetic_selection.py --workdir=<a finished fashion
    workflow run> [--bands=0.5-0.999,0.9-0.999] [--mix=concat|ratio:f] [--seed=k]
→ results/synthetic_selection.json: one record per (workdir, mix, seed); a rerun of
the same replaces its record, others are kept.

The workflow's filter (`mixed.min_confidence`) keeps the synthetic images to which the
real-only classifier gives probability ≥ p of their generated class. That keeps the
images it already finds easy: at p = 0.9 about half of those kept it is ≥ 99.9% sure
of, and they may teach little. A band lo-hi keeps only the images with lo ≤ p < hi
(hi = 1: no upper bound), e.g. 0.5-0.999 drops both the doubtful and the
near-certain ones. Each band trains the workflow's real+synthetic recipe (its
classifiers stage's config) with only that band's synthetic images and is compared
with real-only at the same training seed: the workflow's own run at its seed, else one
trained in <workdir>/seed_spread/real_seed<k>/ (where seed_spread.py trains and finds
it too). The bands are always those of the workflow's real-only classifier, computed
once (<workdir>/synthetic_selection/confidence.npy); runs go to
<workdir>/synthetic_selection/<mix>_band<lo>-<hi>[_seed<k>]/ and resume.
"""
import argparse
import datetime
import json
import os
import pathlib
import sys

from absl import logging
import ml_collections
import numpy as np

from synthfactory.pipelines import machine
from synthfactory.pipelines.configs import fashion
from synthfactory.pipelines.stages import classifiers

import seed_spread  # results/: stage_outputs, mix_name, with_mix.

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "synthetic_selection.json"


def parse_band(band):
  """"lo-hi" → (lo, hi) with 0 ≤ lo < hi ≤ 1."""
  try:
    lo, hi = (float(x) for x in band.split("-"))
  except ValueError:
    raise SystemExit(f"--bands: {band!r} is not lo-hi, e.g. 0.5-0.999.") from None
  if not 0 <= lo < hi <= 1:
    raise SystemExit(f"--bands: {band!r} needs 0 ≤ lo < hi ≤ 1.")
  return lo, hi


def in_band(confidence, lo, hi):
  """Indices with lo ≤ confidence < hi (hi = 1 includes 1)."""
  upper = confidence <= hi if hi == 1 else confidence < hi
  return np.flatnonzero((confidence >= lo) & upper)


def confidence(workdir, out_dir):
  """The real-only classifier's probability of each synthetic image's own class."""
  path = out_dir / "confidence.npy"
  if path.exists():
    return np.load(path), np.load(out_dir / "labels.npy")
  upstream = {s: seed_spread.stage_outputs(workdir, s) for s in ("real_data", "build")}
  done = seed_spread.stage_outputs(workdir, "classifiers")
  # The classifier as the run trained it (model, crops), whatever its overrides.
  config = fashion.get_config("full")
  config.classifier.update(json.loads((pathlib.Path(done["real"]["workdir"]) /
                                       classifiers.RUN_CONFIG).read_text()))
  trainer, variables, synthetic, crop = classifiers.real_classifier_on_synthetic(
      config, upstream, done["real"]["workdir"])
  probs, labels = trainer.probabilities(variables, synthetic, crop)
  np.save(out_dir / "labels.npy", labels)
  with open(f"{path}.tmp", "wb") as f:  # Written last, whole or not at all: the cache key.
    np.save(f, probs[np.arange(len(labels)), labels])
  os.replace(f"{path}.tmp", path)
  return np.load(path), labels


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--bands", default="0.5-0.999,0.9-0.999")
  parser.add_argument("--mix", default="concat", help="concat or ratio:f")
  parser.add_argument("--seed", type=int, default=None,
                      help="training seed; default the workflow's")
  args = parser.parse_args()
  logging.set_verbosity(logging.INFO)
  bands = [parse_band(b) for b in args.bands.split(",")]
  workdir = pathlib.Path(args.workdir).absolute()
  done = seed_spread.stage_outputs(workdir, "classifiers")
  if "real" not in done or "real+synthetic" not in done:
    raise SystemExit(f"{workdir}: its classifiers stage has no real-only and "
                     "real+synthetic runs to compare with.")
  out_dir = workdir / "synthetic_selection"
  out_dir.mkdir(exist_ok=True)
  conf, labels = confidence(workdir, out_dir)
  workflow_mixed = ml_collections.ConfigDict(json.loads(
      (pathlib.Path(done["real+synthetic"]["workdir"]) /
       classifiers.RUN_CONFIG).read_text()))
  base = seed_spread.with_mix(workflow_mixed, args.mix)
  seed, tag = base.seed, ""
  real_top1 = done["real"]["top1"]
  if args.seed is not None and args.seed != base.seed:
    seed, tag = args.seed, f"_seed{args.seed}"
    real = ml_collections.ConfigDict(json.loads(
        (pathlib.Path(done["real"]["workdir"]) / classifiers.RUN_CONFIG).read_text()))
    real.seed = base.seed = seed
    real_top1 = classifiers.train(real, str(workdir / "seed_spread" /
                                            f"real_seed{seed}"))[0]["top1"]
  rows = []
  for lo, hi in bands:
    keep = in_band(conf, lo, hi)
    name = f"{args.mix.replace(':', '')}_band{lo:g}-{hi:g}"
    keep_file = out_dir / f"{name}.npy"
    np.save(keep_file, keep)
    cfg = ml_collections.ConfigDict(base.to_dict())
    cfg.data.synthetic_keep = str(keep_file)
    got = classifiers.train(cfg, str(out_dir / (name + tag)))[0]
    rows.append({"band": [lo, hi], "kept": int(len(keep)), "of": int(len(conf)),
                 "kept_per_class": np.bincount(labels[keep], minlength=10).tolist(),
                 "top1": got["top1"],
                 "minus_real_points": round(100 * (got["top1"] - real_top1), 2)})
    logging.info("band %g-%g: %d images, top-1 %.4f (%+.2f points)", lo, hi,
                 len(keep), got["top1"], rows[-1]["minus_real_points"])
  record = {"workdir": str(workdir), "mix": seed_spread.mix_name(base.data),
            "seed": seed, "real_top1": real_top1,
            "workflow_real+synthetic": {
                "mix": seed_spread.mix_label(workflow_mixed.data,
                                             done["real+synthetic"]),
                "seed": workflow_mixed.seed, "top1": done["real+synthetic"]["top1"]},
            "confidence_quantiles": {str(q): float(np.quantile(conf, q))
                                     for q in (0.1, 0.25, 0.5, 0.75)},
            "bands": rows,
            "command": " ".join([".venv/bin/python results/synthetic_selection.py",
                                 *sys.argv[1:]]),
            "machine": machine.describe(), "date": datetime.date.today().isoformat()}
  records = json.loads(OUTPUT.read_text())["records"] if OUTPUT.exists() else []
  key = lambda r: (r["workdir"], r["mix"], r["seed"])
  records = [r for r in records if key(r) != key(record)] + [record]
  OUTPUT.write_text(json.dumps({"records": records}, indent=1) + "\n")
  print(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
