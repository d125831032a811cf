"""The embedded classifier config on real Fashion-MNIST: test accuracy and CPU time.

Run: `python benchmarks/fashion_classifier_bench.py` (writes
benchmarks/results/fashion_classifier_bench.json; about 5 minutes on 2 cores).

Runs the training job exactly as a user would, as a subprocess in a fresh workdir:
  python -m synthfactory.training.train_classifier \
      --config=training/configs/classifier.py:fashion --workdir=<tmp>
and records its wall time (process start to exit: JAX start-up, compilation, training
and the test-split evaluation), the job's eval.json (top-1, top-5, per-class accuracy
on the 10,000 test images) and the machine with its load average before and after, to
judge how quiet it was. Needs the Fashion-MNIST idx files (`make data`).
"""
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from synthfactory.pipelines import machine

REPO = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = REPO / "benchmarks" / "results" / "fashion_classifier_bench.json"
CONFIG = "training/configs/classifier.py:fashion"


def _last_metrics(path):
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  return json.loads(lines[-1]) if lines else None


def main():
  with tempfile.TemporaryDirectory(prefix="fashion_bench_") as workdir:
    command = [sys.executable, "-m", "synthfactory.training.train_classifier",
               f"--config={CONFIG}", f"--workdir={workdir}"]
    load_start = os.getloadavg()
    start = time.perf_counter()
    # cwd=REPO: the config path is relative to the repository root.
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu",
                               "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - start
    load_end = os.getloadavg()
    if done.returncode:
      sys.exit(f"fashion_classifier_bench: the training job failed "
               f"(exit {done.returncode}):\n{done.stderr[-4000:]}")
    evaluation = json.loads((pathlib.Path(workdir) / "eval.json").read_text())
    metrics_file = pathlib.Path(workdir) / "metrics.jsonl"
    last = _last_metrics(metrics_file) if metrics_file.exists() else None

  import jax  # Versions only; the job ran in its own process.
  result = {
      "benchmark": "fashion_classifier",
      "command": " ".join(["python", "-m", "synthfactory.training.train_classifier",
                           f"--config={CONFIG}", "--workdir=<tmp>"]),
      "wall_seconds": round(wall, 1),
      "steps": evaluation["step"],
      "test_split": evaluation["split"],
      "num_test_examples": evaluation["num_examples"],
      "top1": evaluation["top1"],
      "top5": evaluation["top5"],
      "test_loss": evaluation["loss"],
      "per_class": evaluation["per_class"],
      "last_train_metrics": last,
      "machine": {**machine.describe(),
                  "affinity_cpus": len(os.sched_getaffinity(0)),
                  "load_average_start": [round(x, 2) for x in load_start],
                  "load_average_end": [round(x, 2) for x in load_end]},
      "versions": {"python": platform.python_version(), "jax": jax.__version__},
      "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
  }
  OUTPUT.parent.mkdir(parents=True, exist_ok=True)
  OUTPUT.write_text(json.dumps(result, indent=2) + "\n")
  print(f"fashion: top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f} after "
        f"{result['steps']} steps in {wall:.0f} s → {OUTPUT}")


if __name__ == "__main__":
  main()
