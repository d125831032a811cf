"""One shard's work, free of Beam: sample its items, encode them, write the file.

A `Generator` holds the model, its compiled sampler and the record features; a worker
process builds one and reuses it for every shard it is given. `write_shard` skips a
shard whose file is complete and verified (a resumed or retried job) and otherwise
writes it atomically, so whatever happens around it the shard ends up with the same
bytes. The output folder may be local or gs:// (datasets/storage.py).
"""
import datetime
import json
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from synthfactory.datasets import class_plan as class_plan_lib
from synthfactory.datasets import manifest as manifest_lib
from synthfactory.datasets import seeding
from synthfactory.datasets import shards as shards_lib
from synthfactory.datasets import storage
from synthfactory.models import cascade as cascade_lib
from synthfactory.models import diffusion_model
from synthfactory.models import samplers
from synthfactory.models import unet

STATUS_DIR = ".shard_status"
PROGRESS_SECONDS = 60.0  # Progress log interval inside a shard.


class GenerationError(RuntimeError):
  """The model does not fit the dataset spec, or a shard cannot be produced."""


def load_model(model_spec):
  """(DiffusionModel, params) of a spec's `model` entry."""
  if model_spec["init"]:
    cfg = unet.unet_config(model_spec["init"])
    if model_spec.get("num_classes"):
      cfg.num_classes = model_spec["num_classes"]
    model = diffusion_model.DiffusionModel.from_config(cfg)
    return model, model.init(jax.random.PRNGKey(model_spec["init_seed"]))
  from synthfactory.training import checkpoints  # pylint: disable=g-import-not-at-top
  # A gs:// checkpoint is copied to this worker's cache once, then read locally.
  return checkpoints.load_model(storage.localize(model_spec["checkpoint"]),
                                use_ema=model_spec["use_ema"])


class Generator:
  """Cascade (base + SR stages) + record features of one dataset spec.

  A plain class instance, so `apache_beam.utils.shared.Shared` can hold it by weak
  reference and every DoFn of a worker process shares one copy (every stage's model
  is loaded and compiled once per worker).
  """

  def __init__(self, spec):
    self.spec = spec
    self.plan = class_plan_lib.ClassPlan.from_dict(spec["plan"])
    stage_specs = [dict(model=spec["model"], sampler=spec["sampler"], aug_level=0.0)]
    stage_specs += spec.get("sr_stages", [])
    stages = []
    for k, stage in enumerate(stage_specs):
      model, params = load_model(stage["model"])
      if model.num_classes != self.plan.num_classes:
        raise GenerationError(
            f"The stage {k} model has {model.num_classes} classes, the class plan "
            f"{self.plan.num_classes}; use a plan for this model's label space.")
      stages.append(cascade_lib.Stage(
          model, params, samplers.SamplerConfig.from_dict(stage["sampler"]),
          stage["aug_level"]))
    try:  # Checks the chain (base first, each SR stage's input size) before sampling.
      self.cascade = cascade_lib.Cascade(stages)
    except ValueError as e:
      raise GenerationError(f"The cascade does not chain: {e}") from e
    shape = tuple(spec["image"]["shape"])
    if self.cascade.output_shape != shape:
      raise GenerationError(f"The cascade makes {self.cascade.output_shape} images, "
                            f"the dataset spec says {shape}.")
    self.features = shards_lib.features(self.plan.names, shape,
                                        spec["image"]["encoding"])

  def images(self, labels, indices):
    """Yields uint8 image batches of items (labels, indices), sampled in batches of
    exactly `batch_size` (the last one padded with copies of its first item, whose
    images are dropped)."""
    batch = self.spec["batch_size"]
    for start in range(0, len(labels), batch):
      lab, idx = labels[start:start + batch], indices[start:start + batch]
      n = len(lab)
      lab = np.concatenate([lab, np.full(batch - n, lab[0])])
      idx = np.concatenate([idx, np.full(batch - n, idx[0])])
      keys = seeding.item_keys(self.spec["seed"], lab, idx)
      x = self.cascade.sample(keys, jnp.asarray(lab, jnp.int32))
      yield shards_lib.to_uint8(jax.device_get(x))[:n]

  def records(self, labels, indices):
    """Serialized examples of items, one batch in memory at a time."""
    image, batch = self.spec["image"], self.spec["batch_size"]
    starts = range(0, len(labels), batch)
    for start, images in zip(starts, self.images(labels, indices)):
      for label, index, img in zip(labels[start:start + batch],
                                   indices[start:start + batch], images):
        yield shards_lib.serialize(self.features, {
            "image": shards_lib.encode_image(img, image["encoding"],
                                             image["jpeg_quality"]),
            "label": int(label), "class_id": self.plan.classes[label].id,
            "index": int(index), "seed": self.spec["seed"]})


def _status_path(output_dir, filename):
  return storage.join(output_dir, STATUS_DIR, f"{filename}.json")


def completed_entry(spec, output_dir, shard):
  """The manifest entry of `shard` if its file is complete and verified, else None.

  Complete: its status record (written after the rename) exists; verified: the
  file's SHA-256 and record count match that record and the layout.
  """
  filename = shards_lib.shard_filename(spec["name"], spec["split"], shard,
                                       spec["num_shards"])
  status, path = _status_path(output_dir, filename), storage.join(output_dir, filename)
  try:
    entry = json.loads(storage.read_bytes(status))
  except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
    return None
  if not storage.isfile(path):
    return None
  size = shards_lib.shard_sizes(class_plan_lib.ClassPlan.from_dict(spec["plan"]),
                                spec["num_shards"])[shard]
  if entry.get("num_records") != size or storage.sha256(path) != entry.get("sha256"):
    logging.warning("shard %s is damaged or incomplete: rewriting it", filename)
    return None
  return entry


def _logged(records, what, total):
  """Passes `records` through, logging progress inside a long shard every
  PROGRESS_SECONDS (a 1× Fashion-MNIST shard takes ~10 minutes on a laptop CPU)."""
  start = last = time.perf_counter()
  for done, record in enumerate(records, 1):
    yield record
    now = time.perf_counter()
    if now - last >= PROGRESS_SECONDS and done < total:
      rate = done / (now - start)
      logging.info("%s: %d/%d images (%.1f images/s, shard ETA %s)", what, done, total,
                   rate, datetime.timedelta(seconds=round((total - done) / rate)))
      last = now


def write_shard(generator, output_dir, shard):
  """Makes `shard` (unless complete and verified): returns (manifest entry, written)."""
  spec = generator.spec
  entry = completed_entry(spec, output_dir, shard)
  if entry is not None:
    return entry, False
  labels, indices = shards_lib.shard_items(generator.plan, spec["num_shards"], shard)
  start = time.perf_counter()
  filename = shards_lib.shard_filename(spec["name"], spec["split"], shard,
                                       spec["num_shards"])
  records = _logged(generator.records(labels, indices), f"shard {shard + 1}/"
                    f"{spec['num_shards']}", len(labels))
  sha, count = shards_lib.write_atomic(storage.join(output_dir, filename), records)
  if count != len(labels):
    raise GenerationError(f"Shard {filename}: wrote {count} records, expected "
                          f"{len(labels)}.")
  entry = manifest_lib.shard_entry(spec, shard, sha, labels)
  manifest_lib.write_json(_status_path(output_dir, filename), entry)
  seconds = time.perf_counter() - start
  logging.info("shard %d/%d: %d images in %.1f s (%.1f images/s)", shard + 1,
               spec["num_shards"], count, seconds, count / max(seconds, 1e-9))
  return entry, True
