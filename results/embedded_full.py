"""The embedded factory's headline numbers: the `full` workflow at each synthetic scale.

Command: .venv/bin/python results/embedded_full.py [--scales=1,2] [--workdirs=DIR]
    [--mixes=concat,ratio:0.25] [-- --config.generate.sampler.guidance=3 ...]
→ results/embedded_full.json, a row per scale (rows of scales not run are kept). For
each scale N (N × Fashion-MNIST's 60,000 training images, generated), the workflow
pipelines/configs/fashion.py:full (in <workdirs>/fashion_full_<N>x/, default workdirs/
in the repo; resumable: rerun the same command after an interruption) trains the same
classifier recipe on the 60,000 real images, on the N × 60,000 synthetic ones, and on
both, and tests each on the 10,000 real test images. Each mix of --mixes is one way to
train on both (config `mixed`: concat = the union; ratio:f = a share f of every batch
synthetic; pretrain = the real data, starting from the synthetic-only classifier;
"+filter:p" appended: only the synthetic images the real-only classifier gives
probability ≥ p of their class; "+distill:w" (and "+temperature:T"): soft targets,
w of each the real-only classifier's probabilities, "+teachers:N" the mean of N
real-only classifiers' (trained at successive seeds), and the control "real
(distilled)" trained on the real images alone with them); the first is the headline,
a later one retrains only the real+synthetic classifier (and its control). Hours on a
2-core CPU, most of it sampling.
"""
import argparse
import datetime
import json
import pathlib
import subprocess
import sys

from synthfactory.pipelines import machine
from synthfactory.pipelines.stages import classifiers

DISTILLED = classifiers.DISTILLED_CONTROL

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "embedded_full.json"


_MIX_OPTIONS = {"filter": "min_confidence", "distill": "distill",
                "temperature": "distill_temperature", "teachers": "distill_teachers"}


def parse_mix(mix):
  """"concat", "ratio:f" or "pretrain", then any of "+filter:p", "+distill:w",
  "+temperature:T" and "+teachers:N" → {config.mixed field: its value as written}."""
  how, *options = mix.split("+")
  name, _, fraction = how.partition(":")
  fields = {"mix": name, **({"synthetic_fraction": fraction} if fraction else {})}
  for option in options:
    key, _, value = option.partition(":")
    if key not in _MIX_OPTIONS or not value:
      raise SystemExit(f"--mixes: cannot read {option!r} in {mix!r}; append "
                       f"+filter:p, +distill:w, +temperature:T or +teachers:N.")
    fields[_MIX_OPTIONS[key]] = value
  return fields


def mix_flags(mix):
  """A mix (parse_mix) as the workflow's config flags."""
  return [f"--config.mixed.{field}={value}" for field, value in parse_mix(mix).items()]


def diffusion_model(provenance):
  """Which diffusion checkpoint generated the images: its folder, hash and step."""
  path = pathlib.Path(provenance["checkpoint"])
  steps = [int(p.name) for p in (path / "checkpoints").glob("*") if p.name.isdigit()]
  shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
  return {"checkpoint": str(shown), "sha256": provenance["checkpoint sha256"],
          "step": max(steps, default=None)}


def run_scale(scale, workdirs, mixes, overrides):
  workdir = pathlib.Path(workdirs).absolute() / f"fashion_full_{scale}x"
  return run_workflow("full", workdir, mixes,
                      [f"--config.generate.plan.multiplier={scale}", *overrides])


def run_workflow(variant, workdir, mixes, overrides):
  """Runs pipelines/configs/fashion.py:<variant> in `workdir` once per real+synthetic
  mix (the first in full, later ones retrain only that classifier); its numbers."""
  base = [sys.executable, "-m", "synthfactory.pipelines.run",
          f"--config=pipelines/configs/fashion.py:{variant}", f"--workdir={workdir}",
          *overrides]
  mixed, controls, commands = {}, {}, []
  for mix in mixes:
    command = base + mix_flags(mix)
    subprocess.run(command, cwd=ROOT, check=True)
    results = json.loads((workdir / "07_report" / "results.json").read_text())
    top1 = {c: r["top1"] for c, r in results["classifiers"].items()}
    mixed[mix] = top1.pop("real+synthetic")
    if DISTILLED in top1:  # Each distilling mix's own control.
      controls[mix] = top1.pop(DISTILLED)
    if not commands:  # The first run's stage times: the whole workflow.
      markers = sorted(workdir.glob("*/COMPLETE.json"))
      seconds = {m.parent.name: json.loads(m.read_text())["seconds"] for m in markers}
    commands.append(" ".join(command[1:]))
  headline = mixes[0]
  return {"synthetic_images": results["scale"]["synthetic images"],
          "top1": {**top1, "real+synthetic": mixed[headline]},
          "real+synthetic_mix": headline,
          "real+synthetic_by_mix": mixed,
          **({"real_distilled_by_mix": controls} if controls else {}),
          "synthetic_over_real": top1["synthetic"] / top1["real"],
          "real_plus_synthetic_minus_real_points": 100 * (mixed[headline]
                                                          - top1["real"]),
          "label_agreement": results["comparisons"].get(
              "label agreement (real classifier on synthetic)"),
          "fidelity": results.get("fidelity", {}).get("rows"),
          "sampler": results["provenance"]["sampler"],
          "classifier_training": results["provenance"].get("classifier training"),
          "diffusion_model": diffusion_model(results["provenance"]),
          "stage_seconds": seconds,
          "commands": commands}


def merge_rows(previous, rows):
  """Each row is its own run (command, machine, date): other scales' rows are kept,
  and a rerun scale's earlier row moves to "superseded", so no run is lost."""
  ran = {r["scale"] for r in rows}
  earlier = previous.get("results", [])
  return {"results": [r for r in earlier if r["scale"] not in ran] + rows,
          "superseded": previous.get("superseded", []) + [
              r for r in earlier if r["scale"] in ran]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scales", default="1", help="comma-separated multipliers")
  parser.add_argument("--workdirs", default=str(ROOT / "workdirs"),
                      help="folder of the runs' workdirs (keep it outside a checkout "
                           "that may be replaced, to resume across sessions)")
  parser.add_argument("--mixes", default="concat",
                      help="comma-separated real+synthetic mixes: concat, ratio:f "
                           "(either +filter:p) or pretrain")
  parser.add_argument("overrides", nargs="*",
                      help="after --: workflow config overrides, e.g. "
                           "--config.generate.sampler.guidance=3")
  args = parser.parse_args()
  mixes = [m.strip() for m in args.mixes.split(",")]
  command = " ".join([".venv/bin/python results/embedded_full.py",
                      f"--scales={args.scales}", f"--mixes={args.mixes}",
                      *(["--", *args.overrides] if args.overrides else [])])
  rows = []
  for scale in args.scales.split(","):
    row = {"scale": f"{scale.strip()}×",
           **run_scale(scale.strip(), args.workdirs, mixes, args.overrides)}
    row.update(command=command, machine=machine.describe(), date=datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))
    rows.append(row)
  previous = json.loads(OUTPUT.read_text()) if OUTPUT.exists() else {}
  OUTPUT.write_text(json.dumps(merge_rows(previous, rows), indent=1) + "\n")
  print(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
