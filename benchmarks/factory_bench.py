"""The generation job's overhead and memory: job images/s over bare sampler images/s.

Run: `python benchmarks/factory_bench.py` (writes benchmarks/results/factory_bench.json).

Same model (the `fashion` U-Net, freshly initialised: speed does not depend on the
weights), batch, sampler and steps for both: (a) the bare compiled sampler over the
job's number of images; (b) the generation job on the in-memory DirectRunner (plan,
layout, per-item keys, PNG encoding, TFDS serialization, ArrayRecord writes, hashes,
manifest). The job's program is compiled before timing (JAX's persistent cache), so
both rates exclude compilation. Target (issue 3): (b)/(a) ≥ 0.85.
Peak memory: the job at 1× and at 10× the images (80 and 800) with the same shard
size, each in a fresh process (peak RSS); target: flat.
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from synthfactory.beam_jobs import generation
from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.datasets import seeding
from synthfactory.models import diffusion_model
from synthfactory.models import samplers
from synthfactory.models import unet
from synthfactory.pipelines import machine

PER_CLASS, NUM_CLASSES, SHARD_SIZE = 64, 10, 128   # 640 images, 5 shards.
MEMORY_PER_CLASS = 8    # The memory runs: 80 and 800 images, shards of 40.
OVERRIDES = {"init": "fashion", "plan.source": "uniform", "plan.num_classes": NUM_CLASSES,
             "sampler.steps": 4, "batch_size": 64}
OUT = pathlib.Path(__file__).parent / "results" / "factory_bench.json"


def job_config(per_class=PER_CLASS, shard_size=SHARD_SIZE):
  config = generate_configs.get_config("fashion")
  config.update_from_flattened_dict(OVERRIDES)
  config.plan.per_class = per_class
  config.num_shards = per_class * NUM_CLASSES // shard_size
  return config


def run_job(config, out):
  start = time.perf_counter()
  generation.run(config, out, beam_args=["--direct_running_mode=in_memory"])
  return time.perf_counter() - start


def bare_sampler_seconds(config, total):
  cfg = unet.unet_config("fashion")
  model = diffusion_model.DiffusionModel.from_config(cfg)
  params = model.init(jax.random.PRNGKey(config.seed))
  sample = samplers.make_sampler(
      model.apply, model.schedule, samplers.SamplerConfig.from_dict(config.sampler),
      model.image_shape, prediction=model.prediction, num_classes=model.num_classes)
  batch = config.batch_size
  labels = np.arange(batch) % NUM_CLASSES
  keys = seeding.item_keys(config.seed, labels, np.arange(batch))
  jax.block_until_ready(sample(params, keys, labels))   # Compile.
  start = time.perf_counter()
  for _ in range(-(-total // batch)):
    jax.device_get(sample(params, keys, labels))
  return time.perf_counter() - start


def peak_rss_mb(multiplier):
  """Peak RSS of a fresh process running the job at `multiplier`× the images.

  VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent.
  """
  code = ("import re, sys, tempfile; sys.path.insert(0, %r); "
          "import factory_bench as b; "
          "b.run_job(b.job_config(%d, %d), tempfile.mkdtemp()); "
          "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])"
          % (str(pathlib.Path(__file__).parent), MEMORY_PER_CLASS * multiplier,
             MEMORY_PER_CLASS * NUM_CLASSES // 2))
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, env=os.environ)
  return int(out.stdout.strip().splitlines()[-1]) / 1024


def main():
  cache = tempfile.mkdtemp()
  os.environ.update(JAX_COMPILATION_CACHE_DIR=cache,
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  config = job_config()
  total = PER_CLASS * NUM_CLASSES
  run_job(config, tempfile.mkdtemp())                   # Fills the compile cache.
  job_s = run_job(config, tempfile.mkdtemp())
  bare_s = bare_sampler_seconds(config, total)
  result = {
      "model": "fashion U-Net (28 px)", "sampler": dict(config.sampler),
      "batch_size": config.batch_size, "images": total,
      "job_images_per_s": total / job_s, "bare_sampler_images_per_s": total / bare_s,
      "job_over_bare": bare_s / job_s, "target_job_over_bare": 0.85,
      "peak_rss_mb": {"images_80": peak_rss_mb(1), "images_800": peak_rss_mb(10),
                      "shard_size": MEMORY_PER_CLASS * NUM_CLASSES // 2},
      "shard_size": SHARD_SIZE, "runner": "FnApiRunner in_memory (DirectRunner)",
      "machine": {**machine.describe(), "loadavg": os.getloadavg()},
  }
  OUT.parent.mkdir(exist_ok=True)
  OUT.write_text(json.dumps(result, indent=1) + "\n")
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
