"""Guidance × real+synthetic mix at the demo's scale: which sampler and mix to take to 1×.

Command: .venv/bin/python results/demo_guidance_mix.py [--guidance=2,3]
    [--mixes=concat,ratio:0.25] [--workdirs=DIR] [--output=FILE]
→ results/demo_guidance_mix.json (or --output). For each guidance weight w, the workflow
pipelines/configs/fashion.py:demo (3,000 real and 3,000 synthetic images, the shipped
model's DPM-Solver++ 12 steps at w) in <workdirs>/demo_w<w>/, once per mix of the
real+synthetic classifier (results/embedded_full.py runs them). Each row: top-1 of
real-only, synthetic-only and real+synthetic per mix, FD-fmnist, label agreement.
About 15 minutes per guidance weight on a 2-core CPU.
"""
import argparse
import datetime
import json
import pathlib

import embedded_full
from synthfactory.pipelines import machine

OUTPUT = embedded_full.ROOT / "results" / "demo_guidance_mix.json"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--guidance", default="2,3", help="comma-separated weights w")
  parser.add_argument("--mixes", default="concat,ratio:0.25",
                      help="comma-separated real+synthetic mixes: concat, ratio:f")
  parser.add_argument("--workdirs", default=str(embedded_full.ROOT / "workdirs"))
  parser.add_argument("--output", default=str(OUTPUT),
                      help="JSON to write (another model's study keeps the old one)")
  args = parser.parse_args()
  mixes = [m.strip() for m in args.mixes.split(",")]
  rows = []
  for w in args.guidance.split(","):
    workdir = pathlib.Path(args.workdirs).absolute() / f"demo_w{w.strip()}"
    rows.append({"guidance": float(w), **embedded_full.run_workflow(
        "demo", workdir, mixes, [f"--config.generate.sampler.guidance={w.strip()}"])})
  output = pathlib.Path(args.output)
  flag = "" if output.absolute() == OUTPUT else f" --output={args.output}"
  output.write_text(json.dumps({
      "command": f".venv/bin/python results/demo_guidance_mix.py --guidance="
                 f"{args.guidance} --mixes={args.mixes}{flag}",
      "machine": machine.describe(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "results": rows}, indent=1) + "\n")
  print(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
