"""The embedded factory's headline numbers: the `full` workflow at each synthetic scale.

Command: .venv/bin/python results/embedded_full.py [--scales=1,2] [--workdirs=DIR]
→ results/embedded_full.json. For each scale N (N × Fashion-MNIST's 60,000 training
images, generated), the workflow pipelines/configs/fashion.py:full (in
<workdirs>/fashion_full_<N>x/, default workdirs/ in the repo; resumable: rerun the same
command after an interruption) trains the same classifier recipe on the 60,000
real images, on the N × 60,000 synthetic ones, and on both, and tests each on the
10,000 real test images. Hours on a 2-core CPU, most of it sampling.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "results" / "embedded_full.json"


def machine():
  with open("/proc/meminfo") as f:
    mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
  return {"cpus": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
          "processor": platform.processor() or platform.machine(),
          "python": platform.python_version(), "platform": platform.platform()}


def run_scale(scale, workdirs):
  workdir = pathlib.Path(workdirs).absolute() / f"fashion_full_{scale}x"
  command = [sys.executable, "-m", "synthfactory.pipelines.run",
             "--config=pipelines/configs/fashion.py:full", f"--workdir={workdir}",
             f"--config.generate.plan.multiplier={scale}"]
  subprocess.run(command, cwd=ROOT, check=True)
  results = json.loads((workdir / "07_report" / "results.json").read_text())
  top1 = {c: r["top1"] for c, r in results["classifiers"].items()}
  markers = sorted(workdir.glob("*/COMPLETE.json"))
  return {"scale": f"{scale}×", "synthetic_images": results["scale"]["synthetic images"],
          "top1": top1,
          "synthetic_over_real": top1["synthetic"] / top1["real"],
          "real_plus_synthetic_minus_real_points": 100 * (top1["real+synthetic"]
                                                          - top1["real"]),
          "fidelity": results.get("fidelity", {}).get("rows"),
          "sampler": results["provenance"]["sampler"],
          "stage_seconds": {m.parent.name: json.loads(m.read_text())["seconds"]
                            for m in markers},
          "command": " ".join(command[1:])}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scales", default="1", help="comma-separated multipliers")
  parser.add_argument("--workdirs", default=str(ROOT / "workdirs"),
                      help="folder of the runs' workdirs (keep it outside a checkout "
                           "that may be replaced, to resume across sessions)")
  args = parser.parse_args()
  rows = [run_scale(s.strip(), args.workdirs) for s in args.scales.split(",")]
  OUTPUT.write_text(json.dumps({
      "command": f".venv/bin/python results/embedded_full.py --scales={args.scales}",
      "machine": machine(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "results": rows}, indent=1) + "\n")
  print(json.dumps(rows, indent=1))


if __name__ == "__main__":
  main()
