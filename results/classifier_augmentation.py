"""Do the synthetic images help a classifier trained without data augmentation?

Command: .venv/bin/python results/classifier_augmentation.py --workflow=<full 1x workdir>
    --workdir=<scratch folder> [--recipes=none,pad_crop_flip] [--model=small_cnn]
    [--conditions=real,real+synthetic] [--mixes=concat+filter:0.9,concat]
→ results/classifier_augmentation.json

The `full` recipe augments the real images (2-pixel pad-and-crop, horizontal flips) and
its small CNN underfits them (training accuracy ~94%, test ~93%): a regime in which
extra images, real or synthetic, have little to add (results/data_scaling.json,
results/classifier_capacity.json). The paper's classifiers are the other regime: they
fit ImageNet's training set better than they generalise, and synthetic data acts as
more data. This retrains the `full` workflow's classifier stage
(pipelines/stages/classifiers.py: same data, filter, mixes and schedule) with each
augmentation recipe of --recipes on a finished `full` run's real and synthetic data
(its 01_real_data and 04_build stages), so that the gain from the synthetic images can
be read in both regimes. Runs go to <workdir>/<recipe>/<mix>/ and resume; a recipe's
real-only run is trained once and reused by its other mixes.
"""
import json
import pathlib
import shutil
import sys

from absl import logging

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "classifier_augmentation.json"
sys.path.insert(0, str(ROOT / "results"))

from classifier_capacity import parse_study_flags, stage_config, summarize, workflow_upstream, write_record  # pylint: disable=g-import-not-at-top,wrong-import-position
from synthfactory.pipelines.stages import classifiers  # pylint: disable=g-import-not-at-top,wrong-import-position
from synthfactory.training import classifier_trainer  # pylint: disable=g-import-not-at-top,wrong-import-position

# Augmentation recipes: overrides of training/configs/classifier.py's `augment`.
RECIPES = {
    "pad_crop_flip": {"pad_crop": 2, "flip": True},  # The `full` workflow's own.
    "none": {"pad_crop": 0, "flip": False},
}


def recipe_config(recipe, model, conditions, mix):
  """The `full` workflow's classifier-stage config with augmentation `recipe`."""
  if recipe not in RECIPES:
    raise SystemExit(f"--recipes: unknown recipe {recipe!r}; choose from "
                     f"{sorted(RECIPES)}.")
  config = stage_config(model, conditions, mix)
  config.classifier.augment.update(RECIPES[recipe])
  return config


def reuse_real_run(recipe_dir, stage_dir):
  """Copies a real-only run finished under another mix of the same recipe (same
  config: the stage keeps it) instead of training it again."""
  target = stage_dir / "real"
  if target.exists():
    return
  for done in sorted(recipe_dir.glob(f"*/real/{classifier_trainer.EVAL_FILE}")):
    shutil.copytree(done.parent, target)
    logging.info("%s: real-only run copied from %s", target, done.parent)
    return


def main():
  args = parse_study_flags(__doc__, recipes="none,pad_crop_flip", model="small_cnn",
                           mixes="concat+filter:0.9,concat")
  upstream = workflow_upstream(args.workflow)
  conditions = args.conditions.split(",")
  configs = {(recipe, mix): recipe_config(recipe, args.model, conditions, mix)
             for recipe in args.recipes.split(",") for mix in args.mixes.split(",")}
  rows = {}
  for (recipe, mix), config in configs.items():
    recipe_dir = pathlib.Path(args.workdir).absolute() / recipe
    stage_dir = recipe_dir / mix.replace(":", "_")
    stage_dir.mkdir(parents=True, exist_ok=True)
    reuse_real_run(recipe_dir, stage_dir)
    results = classifiers.make(config).run(str(stage_dir), upstream)
    rows.setdefault(recipe, {"augment": RECIPES[recipe]})[mix] = summarize(
        results, config.classifier.batch_size)
  write_record(OUTPUT, upstream, "augmentation", rows=rows, model=args.model)
  print(json.dumps({r: {m: row[m].get("top1") for m in row if m != "augment"}
                    for r, row in rows.items()}, indent=1))


if __name__ == "__main__":
  main()
