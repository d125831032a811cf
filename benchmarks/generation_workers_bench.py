"""Does the local generation job gain from several DirectRunner worker processes?

Run: `python benchmarks/generation_workers_bench.py` (writes
benchmarks/results/generation_workers_bench.json).

The generation job with the embedded factory's settings (the shipped `fashion` U-Net,
the sampler its sweep chose, batch 75) on a uniform plan of PER_CLASS images a class,
run by the DirectRunner in memory (one process) and with multi_processing and
WORKERS worker processes, alternately REPS times each. Reported: wall-clock images/s
of the whole job (what a user waits for: worker start-up, model loading and
compilation included) and the ratio multi/one. One XLA:CPU process keeps only part
of 2 cores busy with this small U-Net (about 1.25 cores in `top`), so two processes,
each on its own shards, fill them better.
The manifests of all runs must agree shard for shard (same bytes): the worker count
changes where a shard is made, never what is in it.
"""
import json
import os
import pathlib
import tempfile
import time

from synthfactory.beam_jobs import generation
from synthfactory.pipelines import machine
from synthfactory.pipelines.configs import fashion as workflow_configs

PER_CLASS, NUM_CLASSES, NUM_SHARDS = 60, 10, 8   # 600 images, shards of 75.
WORKERS, REPS = 2, 2
OUT = pathlib.Path(__file__).parent / "results" / "generation_workers_bench.json"


def job_config():
  config = workflow_configs.get_config("demo").generate
  config.checkpoint = str(workflow_configs.SHIPPED_MODEL)
  config.plan.update(source="uniform", num_classes=NUM_CLASSES, per_class=PER_CLASS)
  config.num_shards = NUM_SHARDS
  return config


def beam_args(workers):
  if workers == 1:
    return ["--direct_running_mode=in_memory"]
  return ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def timed_run(config, workers):
  """Seconds of one job and its shards' hashes."""
  out = tempfile.mkdtemp()
  start = time.perf_counter()
  manifest = generation.run(config, out, beam_args=beam_args(workers))
  seconds = time.perf_counter() - start
  return seconds, {s["file"]: s["sha256"] for s in manifest["shards"]}


def main():
  config = job_config()
  total = PER_CLASS * NUM_CLASSES
  seconds = {1: [], WORKERS: []}
  hashes = []
  for _ in range(REPS):
    for workers in (1, WORKERS):   # Interleaved: load drifts hit both alike.
      s, h = timed_run(config, workers)
      seconds[workers].append(round(s, 2))
      hashes.append(h)
  identical = all(h == hashes[0] for h in hashes)
  if not identical:
    raise SystemExit("shards differ between runs: generation is not deterministic")
  best = {w: min(s) for w, s in seconds.items()}
  result = {
      "model": "shipped fashion U-Net (models/pretrained/fashion_unet)",
      "sampler": dict(config.sampler), "batch_size": config.batch_size,
      "images": total, "shards": NUM_SHARDS, "workers": WORKERS,
      "seconds": {str(w): s for w, s in seconds.items()},
      "images_per_s_best": {str(w): round(total / s, 2) for w, s in best.items()},
      "multi_over_one": round(best[1] / best[WORKERS], 3),
      "shards_identical": identical,
      "machine": {**machine.describe(), "loadavg": os.getloadavg(),
                  "date": time.strftime("%Y-%m-%d")},
  }
  OUT.parent.mkdir(exist_ok=True)
  OUT.write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
