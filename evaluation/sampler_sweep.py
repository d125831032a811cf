r"""Sweeps sampler settings of a trained diffusion model and picks the best.

  python -m synthfactory.evaluation.sampler_sweep \
      --checkpoint=models/pretrained/fashion_unet \
      --extractor=fmnist:<workdir of a classifier trained on real data> \
      --reference=fashion_mnist_local:test --data_dir=<TFDS dir> \
      --samplers=ddim,dpm_solver_pp --steps=10,20 --guidance=1,2,3 --per_class=100 \
      --output=models/pretrained/fashion_unet/sampler.json

For every (sampler, steps, guidance) it samples `per_class` images of every class with
the per-item keys the generation job uses, quantised to uint8 as the shards store them,
and measures: FD (in the extractor's features, against the reference set), the
extractor-classifier's agreement with the labels the images were generated for, its
Inception-style score, and sampling images/s (compilation excluded). The chosen
setting is the lowest FD; the paper picks by FID the same way (§4.2). The output JSON
holds the table, the choice and the command.
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from synthfactory.datasets import seeding
from synthfactory.datasets import shards
from synthfactory.evaluation import feature_extractor
from synthfactory.evaluation import frechet
from synthfactory.evaluation import image_sets
from synthfactory.evaluation import inception_score
from synthfactory.evaluation import reference_stats
from synthfactory.models import samplers
from synthfactory.training import checkpoints

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Diffusion model (run workdir).")
_EXTRACTOR = flags.DEFINE_string("extractor", None, "Feature extractor spec, e.g. "
                                 "fmnist:<classifier workdir>.")
_REFERENCE = flags.DEFINE_string("reference", None, "Real images: TFDS spec.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir of the reference.")
_SAMPLERS = flags.DEFINE_list("samplers", ["ddim", "dpm_solver_pp"], "Sampler names.")
_STEPS = flags.DEFINE_list("steps", ["10", "20"], "Step counts.")
_GUIDANCE = flags.DEFINE_list("guidance", ["1", "2", "3"], "Guidance weights w.")
_PER_CLASS = flags.DEFINE_integer("per_class", 100, "Images per class and setting.")
_BATCH = flags.DEFINE_integer("batch_size", 100, "Sampling batch (fixed, padded).")
_SEED = flags.DEFINE_integer("seed", 0, "Global seed of the per-item keys.")
_OUTPUT = flags.DEFINE_string("output", None, "Where the JSON goes.")
flags.mark_flags_as_required(["checkpoint", "extractor", "reference", "output"])


def grid(names, steps, guidance):
  """The SamplerConfigs of a sweep, in order."""
  return [samplers.SamplerConfig(name=n, steps=int(s), guidance=float(w))
          for n in names for s in steps for w in guidance]


def sample_all(sample_fn, params, num_classes, per_class, seed, batch_size):
  """uint8 images and labels: per_class of every class, in fixed padded batches."""
  labels = np.repeat(np.arange(num_classes), per_class).astype(np.int32)
  indices = np.tile(np.arange(per_class), num_classes).astype(np.int32)
  out = []
  for start in range(0, len(labels), batch_size):
    lab, idx = labels[start:start + batch_size], indices[start:start + batch_size]
    pad = batch_size - len(lab)
    lab_p, idx_p = np.pad(lab, (0, pad)), np.pad(idx, (0, pad))
    images = sample_fn(params, seeding.item_keys(seed, lab_p, idx_p), lab_p)
    out.append(shards.to_uint8(np.asarray(jax.device_get(images)))[:len(lab)])
  return np.concatenate(out), labels


def measure(images, labels, extractor, reference):
  """FD, label agreement and score of generated uint8 images."""
  moments, logits = reference_stats.RunningMoments(), []
  for start in range(0, len(images), extractor.batch_size):
    got = extractor(images[start:start + extractor.batch_size])
    moments.update(got["features"])
    logits.append(np.asarray(got["logits"]))
  stats, logits = moments.stats(), np.concatenate(logits)
  score, _ = inception_score.inception_score(logits, 1)
  return {extractor.metric_name: frechet.frechet_distance(
              stats.mean, stats.cov, reference.mean, reference.cov),
          "label_agreement": float((logits.argmax(-1) == labels).mean()),
          extractor.score_name: float(score)}


def sweep(model, params, settings, extractor, reference, per_class, seed, batch_size):
  rows = []
  for i, config in enumerate(settings):
    sample_fn = samplers.make_sampler(
        model.apply, model.schedule, config, model.image_shape,
        prediction=model.prediction, num_classes=model.num_classes)
    warm = np.zeros(batch_size, np.int32)  # Compile outside the timing.
    jax.block_until_ready(sample_fn(params, seeding.item_keys(seed, warm, warm), warm))
    start = time.monotonic()
    images, labels = sample_all(sample_fn, params, model.num_classes, per_class, seed,
                                batch_size)
    seconds = time.monotonic() - start
    row = {"sampler": config.to_dict(), "images_per_s": len(images) / seconds,
           **measure(images, labels, extractor, reference)}
    logging.info("setting %d/%d %s %d steps w=%g: %s", i + 1, len(settings),
                 config.name, config.steps, config.guidance,
                 {k: round(v, 4) for k, v in row.items() if k != "sampler"})
    rows.append(row)
  return rows


def choose(rows, metric):
  """The lowest-FD row (fewer model evaluations break ties)."""
  cost = lambda r: r["sampler"]["steps"] * (1 if r["sampler"]["guidance"] == 1 else 2)
  return min(rows, key=lambda r: (round(r[metric], 6), cost(r)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  checkpoints.quiet_orbax_logs()
  model, params = checkpoints.load_model(_CHECKPOINT.value)
  extractor = feature_extractor.create(_EXTRACTOR.value)
  reference = reference_stats.cached(
      image_sets.open_image_set(_REFERENCE.value, data_dir=_DATA_DIR.value),
      extractor, cache_dir=None).stats
  settings = grid(_SAMPLERS.value, _STEPS.value, _GUIDANCE.value)
  rows = sweep(model, params, settings, extractor, reference, _PER_CLASS.value,
               _SEED.value, _BATCH.value)
  best = choose(rows, extractor.metric_name)
  result = {"sampler": best["sampler"], "chosen_by": f"lowest {extractor.metric_name}",
            "sweep": rows, "per_class": _PER_CLASS.value, "seed": _SEED.value,
            "reference": _REFERENCE.value, "extractor": extractor.name,
            "checkpoint": _CHECKPOINT.value, "command": " ".join(sys.argv)}
  tmp = _OUTPUT.value + ".tmp"
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, _OUTPUT.value)
  print(f"chosen: {best['sampler']['name']} {best['sampler']['steps']} steps, guidance "
        f"{best['sampler']['guidance']}: {extractor.metric_name} "
        f"{best[extractor.metric_name]:.3f}, label agreement "
        f"{best['label_agreement']:.3f}")


if __name__ == "__main__":
  app.run(main)
