"""The generation job as a library: dataset spec, output folder, Beam pipeline, cost.

`run(config, output_dir, ...)` writes the class plan and the dataset spec, then runs

  Create(shard ids) → Reshuffle → ParDo(write shard) → ToList → write manifest

Only shard ids and small manifest entries move between steps; images never leave the
worker that samples them. The `generate` module is the command line around this.
The output folder and the checkpoints may be local or gs:// (datasets/storage.py).
"""
import fnmatch
import pathlib
import time

from absl import logging
import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options import pipeline_options
from apache_beam.utils import shared
import jax
import numpy as np

from synthfactory.beam_jobs import progress
from synthfactory.beam_jobs import shard_worker
from synthfactory.beam_jobs import worker_logs
from synthfactory.datasets import class_plan as class_plan_lib
from synthfactory.datasets import manifest as manifest_lib
from synthfactory.datasets import shards as shards_lib
from synthfactory.datasets import storage
from synthfactory.models import samplers
from synthfactory.models import unet

_NAMESPACE = "synthfactory"


class GenerateError(ValueError):
  """The job cannot start: bad config, missing checkpoint, unusable output folder."""


def build_plan(plan_config):
  source, n = plan_config.source, plan_config.multiplier
  if source == "imagenet2012":
    return class_plan_lib.imagenet2012(n)
  if source == "fashion_mnist":
    return class_plan_lib.fashion_mnist(n)
  if source == "uniform":
    return class_plan_lib.uniform(plan_config.num_classes, plan_config.per_class, n)
  if source == "tfds":
    if not plan_config.get("tfds_name"):
      raise GenerateError("plan.source=tfds needs plan.tfds_name, e.g. "
                          "--config.plan.tfds_name=fashion_mnist_local.")
    return class_plan_lib.from_tfds(plan_config.tfds_name, n,
                                    split=plan_config.get("tfds_split") or "train",
                                    data_dir=plan_config.get("data_dir") or None)
  raise GenerateError(f"Unknown plan source {source!r}; choose imagenet2012, "
                      "fashion_mnist, uniform or tfds.")


def _model_config(config, num_classes, what="base model"):
  """(U-Net ConfigDict, model spec) of a checkpoint or init variant.

  `config` is the job config (base model) or one of its `sr_stages` entries; both
  have checkpoint, init and use_ema."""
  if bool(config.checkpoint) == bool(config.init):
    raise GenerateError(f"{what}: give exactly one of checkpoint=<training workdir "
                        "or checkpoints dir> and (tests only) init=<U-Net variant>.")
  if config.init:
    cfg = unet.unet_config(config.init)
    cfg.num_classes = num_classes
    return cfg, dict(checkpoint="", checkpoint_sha256="", init=config.init,
                     init_seed=config.get("seed", 0), num_classes=num_classes,
                     use_ema=config.use_ema)
  from synthfactory.training import checkpoints  # pylint: disable=g-import-not-at-top
  uri = config.checkpoint
  if storage.is_gcs(uri):
    try:
      sub = storage.join(uri, checkpoints.SUBDIR)
      uri = storage.absolute(sub if storage.isdir(sub) else uri)
      # The spec keeps the gs:// uri, so every worker (on any machine) fetches it.
      path = pathlib.Path(storage.localize(uri)) if storage.isdir(uri) else None
    except storage.StorageError as e:
      raise GenerateError(f"{what}: {e}") from e
  else:
    path = checkpoints.resolve(uri).absolute()
    uri = str(path)
  if path is None or not path.is_dir():
    raise GenerateError(f"{what}: checkpoint {config.checkpoint} does not exist; "
                        "pass a diffusion training run's workdir or its checkpoints "
                        "dir.")
  cfg = checkpoints.load_model_config(path)
  return cfg, dict(checkpoint=uri,
                   checkpoint_sha256=manifest_lib.directory_sha256(path), init="",
                   init_seed=0, num_classes=cfg.num_classes, use_ema=config.use_ema)


def _stage_configs(config, num_classes):
  """[(U-Net ConfigDict, model spec, sampler dict, aug_level)] of base + SR stages,
  with the chain checked here so a mismatch fails before any worker samples."""
  cfg, model = _model_config(config, num_classes)
  stages = [(cfg, model, samplers.SamplerConfig.from_dict(config.sampler).to_dict(),
             0.0)]
  for k, sr in enumerate(config.sr_stages, start=1):
    what = f"SR stage {k}"
    sr_cfg, sr_model = _model_config(sr, num_classes, what)
    prev = stages[-1][0]
    if not sr_cfg.get("low_res_size"):
      raise GenerateError(f"{what} is a base model (no low_res_size); every stage "
                          "after the base must be a super-resolution model.")
    if (sr_cfg.low_res_size, sr_cfg.channels) != (prev.image_size, prev.channels):
      raise GenerateError(
          f"{what} upsamples {sr_cfg.low_res_size} px × {sr_cfg.channels} channel "
          f"images but stage {k - 1} makes {prev.image_size} px × {prev.channels}; "
          "reorder the stages or use an SR model of matching low_res_size.")
    if not 0 <= sr.aug_level <= 1:
      raise GenerateError(f"{what}: aug_level must be in [0, 1], got {sr.aug_level}.")
    stages.append((sr_cfg, sr_model,
                   samplers.SamplerConfig.from_dict(sr.sampler).to_dict(),
                   float(sr.aug_level)))
  return stages


def build_spec(config, plan):
  """Everything that defines the dataset's bytes (see datasets/manifest.py)."""
  stages = _stage_configs(config, plan.num_classes)
  for k, (stage_cfg, *_) in enumerate(stages):
    if stage_cfg.num_classes != plan.num_classes:
      raise GenerateError(f"The stage {k} model has {stage_cfg.num_classes} classes, "
                          f"the class plan {plan.num_classes}; pick a plan of the "
                          "model's label space.")
  (_, model, sampler, _), cfg = stages[0], stages[-1][0]  # The last stage's images.
  if config.image.encoding not in shards_lib.ENCODINGS:
    raise GenerateError(f"Unknown image encoding {config.image.encoding!r}; choose "
                        f"one of {shards_lib.ENCODINGS}.")
  if config.batch_size < 1 or config.num_shards < 1:
    raise GenerateError("batch_size and num_shards must be ≥ 1.")
  return {
      "format": manifest_lib.FORMAT_VERSION,
      "name": config.name, "split": config.split, "num_shards": config.num_shards,
      "seed": config.seed, "batch_size": config.batch_size,
      "sampler": sampler, "model": model,
      # Super-resolution stages after the base, in order (empty: base only).
      "sr_stages": [dict(model=m, sampler=sc, aug_level=a)
                    for _, m, sc, a in stages[1:]],
      "image": {"shape": [cfg.image_size, cfg.image_size, cfg.channels],
                "encoding": config.image.encoding,
                "jpeg_quality": config.image.jpeg_quality},
      "plan": plan.to_dict(),
      "package_version": manifest_lib.package_version(),
  }


_DATASET_FILES = (manifest_lib.PLAN_FILE, manifest_lib.SPEC_FILE,
                  manifest_lib.MANIFEST_FILE, shard_worker.STATUS_DIR,
                  # TFDS metadata of a registered dataset (tfds_builders).
                  "dataset_info.json", "features.json", "metadata.json")


def _is_dataset_file(name):
  return (".array_record-" in name or name.startswith(".") and ".tmp-" in name
          or name.endswith(".labels.txt") or name in _DATASET_FILES)


def prepare_output(output_dir, spec, overwrite):
  """Makes `output_dir` (local or gs://) ready: new, or the same dataset (resumed),
  or --overwrite.

  Returns "new", "resume" or "overwrite". Writes the plan and the spec.
  """
  out = storage.absolute(output_dir)
  mode = "new"
  if storage.isfile(out):
    raise GenerateError(f"--output_dir {out} is a file; name a folder.")
  names = storage.listdir(out) if storage.isdir(out) else []
  if names:
    spec_file = storage.join(out, manifest_lib.SPEC_FILE)
    same = (manifest_lib.SPEC_FILE in names and
            manifest_lib.read_json(spec_file, "dataset spec") == spec)
    if same:
      mode = "resume"
      # Temporary files of a killed run (no cleanup runs under SIGKILL). Safe here:
      # this job's workers have not started yet. (GCS has none: uploads are whole.)
      status = storage.join(out, shard_worker.STATUS_DIR)
      for folder in (out, status):
        for name in storage.listdir(folder) if storage.isdir(folder) else ():
          if fnmatch.fnmatch(name, ".*.tmp-*"):
            storage.delete(storage.join(folder, name))
    elif not overwrite:
      what = ("a different dataset (its dataset_spec.json differs)"
              if manifest_lib.SPEC_FILE in names else "files that are not this dataset")
      raise GenerateError(f"--output_dir {out} already holds {what}. Pass "
                          "--overwrite to replace that dataset's files, or choose an "
                          "empty folder.")
    else:
      mode = "overwrite"
      for name in names:
        if _is_dataset_file(name):
          storage.delete(storage.join(out, name))
  try:
    storage.makedirs(storage.join(out, shard_worker.STATUS_DIR))
    plan = class_plan_lib.ClassPlan.from_dict(spec["plan"])
    storage.write_bytes(storage.join(out, manifest_lib.PLAN_FILE),
                        plan.to_json().encode())
    manifest_lib.write_json(storage.join(out, manifest_lib.SPEC_FILE), spec)
  except storage.StorageError:
    raise
  except OSError as e:
    raise GenerateError(f"Cannot write to --output_dir {out}: {e.strerror}. Choose "
                        "a writable folder.") from e
  return mode


def job_progress(output_dir):
  """How far a generation job in `output_dir` has got, from its shards' status
  records (read, not verified): "S/N shards, I/T images (P%)"; "" before it starts."""
  out = storage.absolute(output_dir)
  spec_file = storage.join(out, manifest_lib.SPEC_FILE)
  if not storage.isfile(spec_file):
    return ""
  spec = manifest_lib.read_json(spec_file, "dataset spec")
  status = storage.join(out, shard_worker.STATUS_DIR)
  recorded = set(storage.listdir(status)) if storage.isdir(status) else set()
  n = spec["num_shards"]
  sizes = shards_lib.shard_sizes(class_plan_lib.ClassPlan.from_dict(spec["plan"]), n)
  done = [size for shard, size in enumerate(sizes) if
          f"{shards_lib.shard_filename(spec['name'], spec['split'], shard, n)}.json"
          in recorded]
  total = int(sum(sizes))
  return (f"{len(done)}/{n} shards, {int(sum(done)):,}/{total:,} images "
          f"({100 * sum(done) / max(total, 1):.0f}%)")


class _WriteShards(beam.DoFn):
  """Writes each shard it gets; the model is loaded once per worker process."""

  def __init__(self, spec, output_dir):
    self._spec, self._output_dir = spec, output_dir
    self._shared = shared.Shared()
    self._images = Metrics.counter(_NAMESPACE, "images")
    self._written = Metrics.counter(_NAMESPACE, "shards_written")
    self._skipped = Metrics.counter(_NAMESPACE, "shards_skipped")

  def setup(self):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")  # Leave accelerators to JAX (DESIGN §4).
    self._per_class = [Metrics.counter(f"{_NAMESPACE}.class", str(c))
                       for c in range(len(self._spec["plan"]["classes"]))]
    self._progress = progress.Progress(self._spec["plan"]["total"],
                                       self._spec["num_shards"])

  def _generator(self):
    return self._shared.acquire(lambda: shard_worker.Generator(self._spec),
                                tag=manifest_lib.dumps(self._spec))

  def process(self, shard):
    entry = shard_worker.completed_entry(self._spec, self._output_dir, shard)
    written = entry is None
    if not written:
      self._skipped.inc()
    else:
      entry, _ = shard_worker.write_shard(self._generator(), self._output_dir, shard)
      self._written.inc()
      self._images.inc(entry["num_records"])
      for c, n in enumerate(entry["class_counts"]):
        if n:
          self._per_class[c].inc(n)
    logging.info(self._progress.update(entry["num_records"], written))
    yield entry


def _write_manifest(entries, spec, output_dir):
  manifest = manifest_lib.build(spec, entries)
  plan = class_plan_lib.ClassPlan.from_dict(spec["plan"])
  have = np.sum([e["class_counts"] for e in entries], axis=0)
  if have.tolist() != plan.counts.tolist():
    raise shard_worker.GenerationError(
        "The shards do not meet the class plan (per-class counts differ); delete "
        f"{output_dir}/{shard_worker.STATUS_DIR} and re-run.")
  manifest_lib.write_json(storage.join(output_dir, manifest_lib.MANIFEST_FILE),
                          manifest)


def pipeline_runner(options):
  """FnApiRunner for the DirectRunner (in-memory or multi-processing), which skips
  the Prism download the DirectRunner attempts first (DESIGN §4); else Beam's pick."""
  runner = options.view_as(pipeline_options.StandardOptions).runner
  if runner in (None, "DirectRunner", "direct"):
    from apache_beam.runners.portability.fn_api_runner import fn_runner  # pylint: disable=g-import-not-at-top
    return fn_runner.FnApiRunner()
  return None


def unknown_args(beam_args):
  """The args among `beam_args` that no Beam PipelineOptions class defines.

  Beam itself only logs a warning for these and drops them, so a typo such as
  --direct_num_worker=2 would silently run something else. Parsed the way
  PipelineOptions.get_all_options does (its argparse subclass, every options class).
  """
  parser = pipeline_options._BeamArgumentParser(allow_abbrev=False)  # pylint: disable=protected-access
  classes = {str(c): c for c in pipeline_options.PipelineOptions.__subclasses__()}
  for cls in classes.values():
    cls._add_argparse_args(parser)  # pylint: disable=protected-access
  _, unknown = parser.parse_known_args(list(beam_args))
  return unknown


def run(config, output_dir, *, overwrite=False, beam_args=()):
  """Generates the dataset into `output_dir` (local or gs://): returns the manifest
  dict."""
  plan = build_plan(config.plan)
  spec = build_spec(config, plan)
  try:
    mode = prepare_output(output_dir, spec, overwrite)
  except storage.StorageError as e:
    raise GenerateError(str(e)) from e  # A bucket or credentials problem: one line.
  logging.info("output %s (%s): %d images of %d classes in %d shards", output_dir,
               mode, plan.total, plan.num_classes, spec["num_shards"])
  output_dir = storage.absolute(output_dir)
  options = pipeline_options.PipelineOptions(list(beam_args))
  worker_logs.install()  # Worker processes' progress lines, readable.
  start = time.monotonic()
  with beam.Pipeline(runner=pipeline_runner(options), options=options) as p:
    _ = (p
         | "Shards" >> beam.Create(range(spec["num_shards"]))
         | "Spread" >> beam.Reshuffle()
         | "Write" >> beam.ParDo(_WriteShards(spec, output_dir))
         | "Collect" >> beam.combiners.ToList()
         | "Manifest" >> beam.Map(_write_manifest, spec, output_dir))
  seconds = time.monotonic() - start  # Includes model loading and compiling.
  logging.info("done: %d images in %d shards in %.1f s (%.1f images/s overall)",
               plan.total, spec["num_shards"], seconds, plan.total / max(seconds, 1e-9))
  return manifest_lib.read_json(storage.join(output_dir, manifest_lib.MANIFEST_FILE),
                                "manifest")


def forward_flops(config, plan, stage=0):
  """FLOPs of one evaluation of a stage's model (0: base, k: SR stage k) on one
  image (XLA's cost analysis, no compile)."""
  from synthfactory.models import diffusion_model  # pylint: disable=g-import-not-at-top
  cfg = _stage_configs(config, plan.num_classes)[stage][0]
  model = diffusion_model.DiffusionModel.from_config(cfg)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  x = jax.ShapeDtypeStruct((1,) + tuple(model.image_shape), jax.numpy.float32)
  t = jax.ShapeDtypeStruct((1,), jax.numpy.int32)
  cond = None
  if model.low_res_shape is not None:
    cond = {"low_res": jax.ShapeDtypeStruct((1,) + model.low_res_shape, np.float32),
            "aug_level": jax.ShapeDtypeStruct((1,), np.float32)}
  cost = jax.jit(model.apply).lower(params, x, t, t, cond).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def dry_run_report(config):
  """The plan, shard count and estimated cost, as text; samples and writes nothing."""
  plan = build_plan(config.plan)
  sampler = samplers.SamplerConfig.from_dict(config.sampler)
  evals = 1 if sampler.guidance == 1 else 2  # Guidance adds the unconditional pass.
  flops = 0.0
  for k, (_, _, stage_sampler, _) in enumerate(_stage_configs(config,
                                                              plan.num_classes)):
    stage_sampler = samplers.SamplerConfig.from_dict(stage_sampler)
    stage_evals = 1 if stage_sampler.guidance == 1 else 2
    flops += (forward_flops(config, plan, k) * stage_evals * stage_sampler.steps
              * plan.total)
  sizes = shards_lib.shard_sizes(plan, config.num_shards)
  counts = plan.counts
  lines = [
      f"class plan: {plan.source} × {plan.multiplier}: {plan.num_classes} classes, "
      f"{plan.total} images (per class {counts.min()} … {counts.max()})",
      f"shards: {config.num_shards} of {sizes.min()} … {sizes.max()} images "
      f"({config.name}-{config.split}.array_record-*)",
      f"sampler: {sampler.name}, {sampler.steps} steps, guidance {sampler.guidance} "
      f"({evals} model evaluation(s) a step)"
      + "".join(f"; SR stage {k}: {sr.sampler.name}, {sr.sampler.steps} steps"
                for k, sr in enumerate(config.sr_stages, start=1)),
      f"estimated cost: {flops:.3g} FLOPs",
  ]
  if config.throughput > 0:
    hours = plan.total / config.throughput / 3600
    lines.append(f"estimated time: {hours:.2f} worker-hours at "
                 f"{config.throughput:g} images/s a worker")
  else:
    lines.append("estimated time: unknown (set --config.throughput=<images/s of one "
                 "worker>, e.g. from benchmarks)")
  return "\n".join(lines)
