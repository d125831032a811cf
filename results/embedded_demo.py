"""The demo's headline numbers: results/embedded_demo.json from a finished `make demo`.

Command: make demo && .venv/bin/python results/embedded_demo.py [--workdir=DIR]
    [--note="..."]
→ results/embedded_demo.json (the report's numbers, each stage's seconds from its
completion marker, the machine) and results/embedded_demo_samples.png (the report's
sample grid). It reads the run, it does not start one: a demo that is not finished
(some stage without its marker) is an error that says which stage to finish.
"""
import argparse
import datetime
import json
import pathlib
import shutil

from synthfactory.pipelines import machine
from synthfactory.pipelines import report
from synthfactory.pipelines import runner

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "embedded_demo.json"
SAMPLES = ROOT / "results" / "embedded_demo_samples.png"
COMMAND = ("make demo  (= .venv/bin/python -m synthfactory.pipelines.run "
           "--config=pipelines/configs/fashion.py:demo)")


def stage_seconds(workdir):
  """{stage folder: seconds} from each stage's completion marker, in stage order."""
  workdir = pathlib.Path(workdir)
  stages = sorted(p for p in workdir.iterdir() if p.is_dir() and p.name[:2].isdigit())
  missing = [p.name for p in stages if not (p / runner.MARKER).exists()]
  if not stages or missing:
    raise SystemExit(f"{workdir} holds no finished demo (unfinished: "
                     f"{', '.join(missing) or 'every stage'}); run `make demo` first.")
  return {p.name: json.loads((p / runner.MARKER).read_text())["seconds"]
          for p in stages}


def record(results, seconds, note, machine_info, date):
  """The committed record: the report's numbers (results.json) and how long each
  stage took, on which machine."""
  classifiers = results["classifiers"]
  return {
      "command": COMMAND, "date": date, "machine": machine_info,
      "wall_time_s": round(sum(seconds.values()), 1), "note": note,
      "stage_seconds": seconds, "summary": results["summary"],
      "top1": {c: r["top1"] for c, r in classifiers.items()},
      "num_train": {c: r["num_train"] for c, r in classifiers.items()},
      "comparisons": results["comparisons"], "fidelity": results.get("fidelity"),
      "sampler": results["provenance"]["sampler"],
      "checkpoint_sha256": results["provenance"]["checkpoint sha256"]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=str(ROOT / "workdirs" / "fashion_demo"),
                      help="the finished demo's workdir")
  parser.add_argument("--note", default="", help="what the numbers are from")
  args = parser.parse_args()
  seconds = stage_seconds(args.workdir)
  report_dir = pathlib.Path(args.workdir) / sorted(seconds)[-1]
  results = json.loads((report_dir / "results.json").read_text())
  out = record(results, seconds, args.note, machine.describe(),
               datetime.date.today().isoformat())
  OUTPUT.write_text(json.dumps(out, indent=1) + "\n")
  shutil.copyfile(report_dir / report.PLOTS_DIR / f"{report.SAMPLES_PLOT}.png", SAMPLES)
  print("\n".join(out["summary"]))


if __name__ == "__main__":
  main()
