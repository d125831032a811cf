r"""Sweeps sampler settings of a trained diffusion model and picks the best.

  python -m synthfactory.evaluation.sampler_sweep \
      --checkpoint=models/pretrained/fashion_unet \
      --extractor=fmnist:<workdir of a classifier trained on real data> \
      --reference=fashion_mnist_local:test --data_dir=<TFDS dir> \
      --samplers=ddim,dpm_solver_pp --steps=10,20 --guidance=1,2,3 --per_class=100 \
      --output=models/pretrained/fashion_unet/sampler.json

--guidance_intervals=all,0.3:6 also tries each guidance weight ≠ 1 applied only on
the steps whose noise level σ lies in (0.3, 6] ("all": every step; models/samplers.py).
For every (sampler, steps, guidance, interval) it samples `per_class` images of every
class with the per-item keys the generation job uses, quantised to uint8 as the shards
store them, and measures: FD (in the extractor's features, against the reference set), the
extractor-classifier's agreement with the labels the images were generated for, its
Inception-style score, and sampling images/s (compilation excluded). The chosen
setting is the lowest FD, or with --fd_margin=m the one with the highest label
agreement among those whose FD is within a fraction m of the lowest: the paper's
final settings take "FID and CAS into account" (§4.2), and label agreement is our
cheap stand-in for CAS. The output JSON holds the table, the rule, the choice and the
command.

Adding settings to a recorded sweep samples only the new ones: --extend=<its JSON> (with
the same --per_class, --seed and --reference) first re-measures the table's cheapest
setting and refuses unless it reproduces (the same checkpoint, extractor and
reference), then chooses from the whole table.

Choosing again with another rule needs no sampling: --rechoose=<a sweep's JSON>
applies --fd_margin to its table (checkpoint, extractor and reference are not needed):

  python -m synthfactory.evaluation.sampler_sweep \
      --rechoose=models/pretrained/fashion_unet/sampler.json --fd_margin=0.05 \
      --output=models/pretrained/fashion_unet/sampler.json
"""
import json
import os
import pathlib
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


def _define_flags():
  """The job's flags, defined only when it runs as a program: its names (output,
  reference, ...) are also the evaluate job's, and both modules load in one process
  in tests."""
  d = flags
  holders = dict(
      checkpoint=d.DEFINE_string("checkpoint", None, "Diffusion model (run workdir)."),
      extractor=d.DEFINE_string("extractor", None, "Feature extractor spec, e.g. "
                                "fmnist:<classifier workdir>."),
      reference=d.DEFINE_string("reference", None, "Real images: TFDS spec."),
      data_dir=d.DEFINE_string("data_dir", None, "TFDS data dir of the reference."),
      samplers=d.DEFINE_list("samplers", ["ddim", "dpm_solver_pp"], "Sampler names."),
      steps=d.DEFINE_list("steps", ["10", "20"], "Step counts."),
      guidance=d.DEFINE_list("guidance", ["1", "2", "3"], "Guidance weights w."),
      guidance_intervals=d.DEFINE_list(
          "guidance_intervals", ["all"], "Where guidance applies: 'all' steps, or "
          "'lo:hi', the steps with noise level lo < σ ≤ hi (for each w ≠ 1)."),
      per_class=d.DEFINE_integer("per_class", 100, "Images per class and setting."),
      batch_size=d.DEFINE_integer("batch_size", 100, "Sampling batch (fixed, padded)."),
      seed=d.DEFINE_integer("seed", 0, "Global seed of the per-item keys."),
      fd_margin=d.DEFINE_float("fd_margin", 0.0, "Choose the highest label agreement "
                               "among settings whose FD is within this fraction of "
                               "the lowest (0: the lowest FD).", lower_bound=0.0),
      rechoose=d.DEFINE_string("rechoose", None, "A sweep's JSON: choose again from "
                               "its table with --fd_margin, sampling nothing."),
      extend=d.DEFINE_string("extend", None, "A sweep's JSON: sample only the "
                             "settings its table lacks and choose from both."),
      output=d.DEFINE_string("output", None, "Where the JSON goes."))
  flags.mark_flags_as_required(["output"])
  return holders


def parse_interval(text):
  """'all' → () (every step); 'lo:hi' → (lo, hi)."""
  if text == "all":
    return ()
  try:
    lo, hi = (float(v) for v in text.split(":"))
  except ValueError:
    raise app.UsageError(f"--guidance_intervals entry {text!r} is neither 'all' nor "
                         "'lo:hi' (noise levels, e.g. 0.3:6).") from None
  return (lo, hi)


def grid(names, steps, guidance, intervals=("all",)):
  """The SamplerConfigs of a sweep, in order; w = 1 (no guidance) takes no interval."""
  intervals = [parse_interval(i) for i in intervals]
  return [samplers.SamplerConfig(name=n, steps=int(s), guidance=float(w),
                                 guidance_interval=i)
          for n in names for s in steps for w in guidance
          for i in (intervals if float(w) != 1 else [()])]


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
           "evaluations_per_image": samplers.model_evaluations(model.schedule, config),
           **measure(images, labels, extractor, reference)}
    logging.info("setting %d/%d %s %d steps w=%g interval %s: %s", i + 1,
                 len(settings), config.name, config.steps, config.guidance,
                 config.guidance_interval or "all",
                 {k: round(v, 4) for k, v in row.items() if k != "sampler"})
    rows.append(row)
  return rows


def _cost(row):
  """Network evaluations per image (computed for sweeps recorded before the field)."""
  s = row["sampler"]
  return row.get("evaluations_per_image", s["steps"] * (1 if s["guidance"] == 1 else 2))


def extension(recorded, settings, opts, measure):
  """The settings not yet in a recorded sweep's table, once its cheapest setting,
  re-measured here by `measure([config]) -> [row]`, reproduces its row."""
  for key in ("per_class", "seed", "reference"):
    if recorded.get(key) != opts[key]:
      raise app.UsageError(
          f"--extend: the recorded sweep has {key}={recorded.get(key)!r}, this one "
          f"{opts[key]!r}; a table's rows must share it.")
  rows, metric = recorded["sweep"], _metric(recorded["sweep"])
  probe = min(rows, key=_cost)
  again = measure([samplers.SamplerConfig.from_dict(probe["sampler"])])[0]
  if not (np.isclose(again[metric], probe[metric], rtol=1e-3) and
          abs(again["label_agreement"] - probe["label_agreement"]) <= 0.002):
    raise app.UsageError(
        f"--extend: the recorded setting {probe['sampler']} gave {metric} "
        f"{probe[metric]:.4f}, agreement {probe['label_agreement']:.4f}; here "
        f"{again[metric]:.4f}, {again['label_agreement']:.4f}. The checkpoint, "
        "--extractor or --reference differ from the recorded sweep's: use those, or "
        "sweep afresh.")
  known = {json.dumps(r["sampler"], sort_keys=True) for r in rows}
  return [c for c in settings if json.dumps(c.to_dict(), sort_keys=True) not in known]


def choose(rows, metric, fd_margin=0.0):
  """The lowest-FD row or, with a margin, the highest label agreement among the rows
  whose FD is within `fd_margin` (a fraction) of the lowest. Lower FD, then fewer
  model evaluations, break ties."""
  if fd_margin < 0:
    raise ValueError(f"fd_margin={fd_margin} is negative; use 0 for the lowest FD or "
                     "e.g. 0.05 for within 5% of it.")
  by_fd = lambda r: (round(r[metric], 6), _cost(r))
  if not fd_margin:
    return min(rows, key=by_fd)
  limit = min(r[metric] for r in rows) * (1 + fd_margin)
  near = [r for r in rows if r[metric] <= limit]
  return min(near, key=lambda r: (-round(r["label_agreement"], 6), *by_fd(r)))


def _command():
  return " ".join(["python -m synthfactory.evaluation.sampler_sweep", *sys.argv[1:]])


def rule(metric, fd_margin):
  """The choice rule in words, as the output JSON records it."""
  if not fd_margin:
    return f"lowest {metric}"
  return f"highest label agreement within {fd_margin:.0%} of the lowest {metric}"


def _write(result, output):
  output = pathlib.Path(output)
  output.parent.mkdir(parents=True, exist_ok=True)
  tmp = output.with_name(output.name + ".tmp")
  tmp.write_text(json.dumps(result, indent=1) + "\n")
  os.replace(tmp, output)


def _metric(rows):
  return next(k for k in rows[0] if k == "FID" or k.startswith("FD-"))


def read_sweep(path, flag):
  """A recorded sweep's JSON and its FD metric's name."""
  try:
    result = json.loads(pathlib.Path(path).read_text())
    return result, _metric(result["sweep"])
  except (OSError, ValueError, KeyError, IndexError, StopIteration) as e:
    raise app.UsageError(f"{flag}={path} is not a sampler sweep's JSON ({e!r}); "
                         "give the output of an earlier sweep.") from e


def rechoose(path, fd_margin):
  """A recorded sweep with its choice made again by `fd_margin`."""
  result, metric = read_sweep(path, "--rechoose")
  rows = result["sweep"]
  result.setdefault("sweep_command", result.get("command"))
  result.update(sampler=choose(rows, metric, fd_margin)["sampler"],
                chosen_by=rule(metric, fd_margin), fd_margin=fd_margin,
                command=_command())
  return result, metric


def main(argv, opts):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  opts = {name: holder.value for name, holder in opts.items()}
  if opts["rechoose"]:
    result, metric = rechoose(opts["rechoose"], opts["fd_margin"])
    _write(result, opts["output"])
    best = next(r for r in result["sweep"] if r["sampler"] == result["sampler"])
    _print_choice(best, metric)
    return
  needed = [f"--{n}" for n in ("checkpoint", "extractor", "reference") if not opts[n]]
  if needed:
    raise app.UsageError(f"A sweep needs {', '.join(needed)} (or --rechoose=<a sweep's "
                         "JSON> to choose again without sampling).")
  checkpoints.quiet_orbax_logs()
  model, params = checkpoints.load_model(opts["checkpoint"])
  extractor = feature_extractor.create(opts["extractor"])
  reference = reference_stats.cached(
      image_sets.open_image_set(opts["reference"], data_dir=opts["data_dir"]),
      extractor, cache_dir=None).stats
  settings = grid(opts["samplers"], opts["steps"], opts["guidance"],
                  opts["guidance_intervals"])
  measure_all = lambda configs: sweep(model, params, configs, extractor, reference,
                                      opts["per_class"], opts["seed"],
                                      opts["batch_size"])
  earlier, extends = [], []
  if opts["extend"]:
    recorded, _ = read_sweep(opts["extend"], "--extend")
    settings = extension(recorded, settings, opts, measure_all)
    earlier = recorded["sweep"]
    extends = recorded.get("extends", []) + [
        recorded.get("sweep_command", recorded["command"])]
  rows = earlier + measure_all(settings)
  metric, margin = extractor.metric_name, opts["fd_margin"]
  best = choose(rows, metric, margin)
  result = {"sampler": best["sampler"], "chosen_by": rule(metric, margin),
            "fd_margin": margin, "sweep": rows, "per_class": opts["per_class"],
            "seed": opts["seed"], "reference": opts["reference"],
            "extractor": extractor.name, "checkpoint": opts["checkpoint"],
            "command": _command(), **({"extends": extends} if extends else {})}
  _write(result, opts["output"])
  _print_choice(best, metric)


def _print_choice(best, metric):
  interval = best["sampler"].get("guidance_interval")
  where = f" on σ in {tuple(interval)}" if interval else ""
  print(f"chosen: {best['sampler']['name']} {best['sampler']['steps']} steps, guidance "
        f"{best['sampler']['guidance']}{where}: {metric} {best[metric]:.3f}, label "
        f"agreement {best['label_agreement']:.3f}")


if __name__ == "__main__":
  _flags = _define_flags()
  app.run(lambda argv: main(argv, _flags))
