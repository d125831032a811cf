"""Is classifier training input-bound? Input pipeline examples/s over training-step
examples/s, for the `fashion` config and the ResNet-50 recipes on a tiny ResNet.

Run: `python benchmarks/input_bench.py` (writes benchmarks/results/input_bench.json).

Cases:
  fashion          the `fashion` config as it runs: Fashion-MNIST idx arrays in memory
                   (a batch is a numpy gather), small_cnn, pad-crop + flip on device.
  resnet50_tiny    the `resnet50` recipe of Table A.1 (random-resized crop to 224 px
                   on the host; flip, RandAugment m=10, label smoothing on the device)
                   on the `resnet_tiny` model, reading a TFDS ArrayRecord dataset of
                   ImageNet-like JPEGs (300-500 px sides) decoded per batch.
  cas_resnet50_tiny  the same with the CAS recipe: resize 256 → center crop 224, no
                   augmentation.
Each is timed alone with all cores (the host pipeline's reads and decodes, with its
prefetch threads; the jitted step including the host-to-device copy), repetitions of
the two interleaved and medians reported, so other load on the machine slows both
alike. The target is a ratio ≥ 5: the input pipeline is never what the step waits on.
"""
import json
import os
import pathlib
import tempfile
import time

import jax
import numpy as np
import PIL.Image
import PIL.ImageFilter

from synthfactory.models import classifiers
from synthfactory.pipelines import machine
from synthfactory.training import classifier_data
from synthfactory.training import classifier_trainer
from synthfactory.training.configs import classifier as classifier_configs

REPS = 5
TARGET = 5.0
TINY_BATCH = 64  # The recipes' 1024-4096 do not fit a CPU benchmark.
NUM_JPEGS = 512
OUT = pathlib.Path(__file__).parent / "results" / "input_bench.json"


def _imagenet_like(n, seed=0):
  """Smooth random photos-to-be of ImageNet's typical sizes (JPEG-compressible)."""
  rng = np.random.default_rng(seed)
  images = []
  for _ in range(n):
    h, w = rng.integers(300, 500, 2)
    small = rng.integers(0, 256, (h // 16, w // 16, 3), np.uint8)
    image = PIL.Image.fromarray(small).resize((w, h), PIL.Image.BICUBIC)
    images.append(np.asarray(image.filter(PIL.ImageFilter.GaussianBlur(2))))
  return images, rng.integers(0, 1000, n)


def _config(variant, jpeg_folder=None):
  config = classifier_configs.get_config(variant)
  if variant != "fashion":
    config.model.update(name="resnet_tiny", dtype="float32")  # CPU: no bfloat16.
    spec = f"{jpeg_folder}:train"  # As real data (resnet50) or generated (CAS).
    config.data.update(real=spec if config.data.mix == "real" else "",
                       synthetic=spec if config.data.mix == "synthetic" else "",
                       cache_mb=0)
    config.batch_size = TINY_BATCH
  return config


def _case(config):
  data = classifier_data.make_train_data(config.data, config.batch_size, config.seed)
  trainer = classifier_trainer.Trainer(classifiers.build(config.model), config, data)
  state = trainer.init_state()
  batch = data.batch(0)
  start = time.perf_counter()
  state, _ = trainer.step(state, batch)  # Compiles.
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  input_steps, train_steps = 24, 8
  input_s, train_s = [], []
  for rep in range(REPS):
    first = 1 + rep * input_steps
    start = time.perf_counter()
    for _ in data.batches(first, first + input_steps):
      pass
    input_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(train_steps):
      state, metrics = trainer.step(state, batch)
    jax.block_until_ready(metrics)
    train_s.append(time.perf_counter() - start)
  input_rate = input_steps * config.batch_size / float(np.median(input_s))
  train_rate = train_steps * config.batch_size / float(np.median(train_s))
  source = next(iter(data.sources.values()))
  return {
      "model": config.model.name, "batch_size": config.batch_size,
      "image_shape": list(trainer.image_shape), "train_crop": config.data.train_crop,
      "source": type(source).__name__, "device_augment": config.augment.to_dict(),
      "compile_s": round(compile_s, 2),
      "input_examples_per_s": round(input_rate, 1),
      "train_step_examples_per_s": round(train_rate, 1),
      "ratio": round(input_rate / train_rate, 2),
      "raw_seconds_input_train": [[round(a, 4), round(b, 4)]
                                  for a, b in zip(input_s, train_s)],
  }


def main():
  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    images, labels = _imagenet_like(NUM_JPEGS)
    folder = classifier_data.write_tfds_dataset(
        tmp, "imagenet_like", {"train": (images, labels)},
        [f"class_{i}" for i in range(1000)], encoding="jpeg")
    for name, variant in [("fashion", "fashion"), ("resnet50_tiny", "resnet50"),
                          ("cas_resnet50_tiny", "cas_resnet50")]:
      results[name] = {"config": variant, **_case(_config(variant, folder))}
      print(name, {k: results[name][k] for k in (
          "input_examples_per_s", "train_step_examples_per_s", "ratio")}, flush=True)
  report = {
      "machine": {**machine.describe(), "jax_version": jax.__version__,
                  "device": str(jax.devices()[0]),
                  "load_average_1m_at_end": os.getloadavg()[0]},
      "target_ratio": TARGET,
      "all_meet_target": all(r["ratio"] >= TARGET for r in results.values()),
      "cases": results,
      "repetitions": REPS,
  }
  OUT.parent.mkdir(exist_ok=True)
  OUT.write_text(json.dumps(report, indent=2) + "\n")
  print(f"wrote {OUT}")


if __name__ == "__main__":
  main()
