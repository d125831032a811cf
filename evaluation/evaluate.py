r"""Evaluates a generated image set against a reference set and writes a JSON report.

  python -m synthfactory.evaluation.evaluate \
      --generated=synthetic_imagenet/64x_1x:train --reference=imagenet2012:validation \
      --extractor=inception:/weights/inception_fid.npz --image_size=64 \
      --output=report.json

Sets are TFDS datasets in ArrayRecord format, "<name>[:<split>]" or
"<dataset folder>[:<split>]" (evaluation/image_sets.py). The report holds the Fréchet
distance under the extractor's features, named "FID" only for the Inception with the
reference FID weights and "FD-<extractor>" otherwise; an Inception-style score when the
extractor has logits ("IS", or "IS-<extractor>"); k-NN precision and recall; counts,
cache status and provenance. Reference statistics are cached in --cache_dir.

On Fashion-MNIST, --extractor=fmnist:<classifier workdir> uses a classifier trained
on real data (evaluation/fmnist_features.py): metrics "FD-fmnist" and "IS-fmnist".
Another extractor comes from a module that registers it (feature_extractor.register):
--extractor_imports=<module> --extractor=<name>[:<arg>].
"""
import datetime
import importlib
import json
import os
import pathlib
import subprocess
import sys

from absl import app
from absl import flags
import numpy as np

from synthfactory.evaluation import feature_extractor
from synthfactory.evaluation import frechet
from synthfactory.evaluation import image_sets
from synthfactory.evaluation import inception_score
from synthfactory.evaluation import precision_recall
from synthfactory.evaluation import reference_stats

_GENERATED = flags.DEFINE_string("generated", None, "Generated set: TFDS name or "
                                 "dataset folder, optionally ':<split>' (default train).")
_REFERENCE = flags.DEFINE_string("reference", None, "Reference set: TFDS "
                                 "'<name>:<split>' (or a dataset folder).")
_EXTRACTOR = flags.DEFINE_string("extractor", None, "'inception:<weights.npz>', "
                                 "'fmnist:<classifier workdir>' or another "
                                 "registered '<name>[:<arg>]'.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the JSON report.")
_EXTRACTOR_IMPORTS = flags.DEFINE_list("extractor_imports", [], "Modules to import "
                                       "first; they register more extractors.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir of named datasets.")
_IMAGE_KEY = flags.DEFINE_string("image_key", "image", "The image feature of both sets.")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", os.path.expanduser("~/.cache/synthfactory/feature_stats"),
    "Reference statistics cache; '' turns caching off.")
_NUM_GENERATED = flags.DEFINE_integer("num_generated", 0, "Use a fixed random subset "
                                      "of this many generated images (0: all).")
_NUM_REFERENCE = flags.DEFINE_integer("num_reference", 0, "Likewise for the reference.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 0, "Center-crop and resize both sets "
                                   "to this size first (0: keep; needed for sets of "
                                   "varying image sizes such as imagenet2012).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Extractor batch (0: its default).")
_PR_SAMPLES = flags.DEFINE_integer("pr_samples", 10_000, "Images per set for precision"
                                   "/recall (a fixed random subset); 0 skips them.")
_PR_K = flags.DEFINE_integer("pr_k", 3, "k of the k-NN manifolds.")
_IS_SPLITS = flags.DEFINE_integer("is_splits", 10, "Splits of the Inception Score.")


def evaluate(generated, reference, extractor, cache_dir=None, num_generated=0,
             num_reference=0, image_size=0, pr_samples=10_000, pr_k=3, is_splits=10):
  """Metrics of ImageSet `generated` against ImageSet `reference` → report dict."""
  ref = reference_stats.cached(reference, extractor, cache_dir, max_images=num_reference,
                               sample_size=pr_samples, image_size=image_size)
  gen = reference_stats.compute(generated, extractor, max_images=num_generated,
                                sample_size=pr_samples, keep_logits=True,
                                image_size=image_size)
  gen.info["cache"] = "off (generated sets are always computed)"
  metrics = {extractor.metric_name: frechet.frechet_distance(
      gen.stats.mean, gen.stats.cov, ref.stats.mean, ref.stats.cov)}
  if gen.logits is not None:
    mean, std = inception_score.inception_score(gen.logits,
                                                min(is_splits, len(gen.logits)))
    metrics[extractor.score_name], metrics[f"{extractor.score_name}_std"] = mean, std
  if pr_samples:
    metrics.update(precision_recall.precision_recall(ref.sample, gen.sample, k=pr_k))
  return {
      "metric_name": extractor.metric_name,
      "metrics": metrics,
      "counts": {"generated": gen.stats.count, "reference": ref.stats.count},
      "options": {"image_size": image_size or None, "pr_samples": pr_samples,
                  "pr_k": pr_k, "is_splits": is_splits},
      "generated": gen.info,
      "reference": ref.info,
      "extractor": {"name": extractor.name, "identity": extractor.identity,
                    "is_fid_network": extractor.is_fid_network,
                    "feature_dim": int(gen.stats.mean.shape[0]),
                    "batch_size": extractor.batch_size},
      "provenance": provenance(),
  }


def provenance():
  return {"command": sys.argv, "code_version": _code_version(),
          "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
          "python": sys.version.split()[0], "numpy": np.__version__}


def _code_version():
  try:
    out = subprocess.run(["git", "-C", str(pathlib.Path(__file__).parent), "describe",
                          "--always", "--dirty"], capture_output=True, text=True,
                         timeout=10, check=True)
    return out.stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None  # Not a git checkout (e.g. an installed package).


def write_report(report, path):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)


def run(args):
  """The job behind main(): everything from the parsed flags."""
  for module in args.extractor_imports:
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise ValueError(f"Cannot import extractor module {module!r}: {e}") from e
  extractor = feature_extractor.create(args.extractor, args.batch_size or None)
  open_set = lambda spec: image_sets.open_image_set(
      spec, data_dir=args.data_dir, image_key=args.image_key)
  generated, reference = open_set(args.generated), open_set(args.reference)
  report = evaluate(generated, reference, extractor, args.cache_dir,
                    args.num_generated, args.num_reference,
                    args.image_size, args.pr_samples, args.pr_k,
                    args.is_splits)
  write_report(report, args.output)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    report = run(flags.FLAGS)
  except ValueError as e:  # Our errors say what is wrong and how to fix it.
    sys.exit(f"evaluate: {e}")
  summary = ", ".join(f"{k} {v:.4g}" for k, v in report["metrics"].items())
  print(f"{summary} ({report['counts']['generated']} generated vs "
        f"{report['counts']['reference']} reference images) → {flags.FLAGS.output}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["generated", "reference", "extractor", "output"])
  app.run(main)
