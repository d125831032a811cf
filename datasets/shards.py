"""Shard layout, record encoding and atomic shard files (DESIGN §3 "Shards").

Assignment: the plan's items, numbered class after class (global ordinal g =
offset of class c + index), go to shard g mod num_shards. Every shard so holds about
1/num_shards of every class, shard sizes differ by at most one, and shard k's items
are computed directly from the plan, with no global shuffle of items or bytes.
Within a shard the items are ordered by a fixed hash of (class, index), which mixes
classes. Everything here is a pure function of (plan, num_shards).

Files are TFDS-named ArrayRecord files (`<name>-<split>.array_record-<k>-of-<n>`),
one record per image: a `tf.train.Example` serialized by the dataset's TFDS
FeaturesDict. A shard is written under a temporary name and renamed when complete,
so a reader never sees a partial shard and a retried write leaves one whole shard.
ArrayRecord cannot write to gs:// (DESIGN §4): a gs:// shard is written to a local
temporary file and uploaded whole (an object appears only when its upload completes).
"""
import io
import os
import pathlib
import tempfile
import uuid

import numpy as np

from synthfactory.datasets import storage

ENCODINGS = ("png", "jpeg")


class ShardError(ValueError):
  """A shard cannot be laid out, written or read."""


def _check_num_shards(num_shards):
  if not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
    raise ShardError(f"num_shards must be a positive integer, got {num_shards!r}.")


def shard_sizes(plan, num_shards):
  """Number of items of each shard, (num_shards,) int64."""
  _check_num_shards(num_shards)
  total = plan.total
  return np.array([total // num_shards + (k < total % num_shards)
                   for k in range(num_shards)], np.int64)


def _mix_order(labels, indices):
  """A fixed pseudo-random order of items (splitmix64 of class and index)."""
  z = (labels.astype(np.uint64) << np.uint64(32)) | indices.astype(np.uint64)
  z = z + np.uint64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  z = z ^ (z >> np.uint64(31))
  return np.lexsort((indices, labels, z))


def shard_items(plan, num_shards, shard):
  """(labels, indices) int64 arrays: the items of `shard`, in record order."""
  _check_num_shards(num_shards)
  if not 0 <= shard < num_shards:
    raise ShardError(f"Shard {shard} is outside 0 … {num_shards - 1}.")
  counts = plan.counts
  offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
  labels, indices = [], []
  for c, (offset, count) in enumerate(zip(offsets, counts)):
    first = (shard - offset) % num_shards
    idx = np.arange(first, count, num_shards, dtype=np.int64)
    labels.append(np.full(idx.shape, c, np.int64))
    indices.append(idx)
  labels, indices = np.concatenate(labels), np.concatenate(indices)
  order = _mix_order(labels, indices)
  return labels[order], indices[order]


def shard_filename(name, split, shard, num_shards):
  """TFDS file naming: `<name>-<split>.array_record-00003-of-00016`."""
  return f"{name}-{split}.array_record-{shard:05d}-of-{num_shards:05d}"


def features(class_names, image_shape, encoding="png"):
  """The TFDS FeaturesDict of a synthetic dataset's records."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (heavy)
  if encoding not in ENCODINGS:
    raise ShardError(f"Unknown image encoding {encoding!r}; choose one of {ENCODINGS}.")
  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=tuple(image_shape), encoding_format=encoding),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      # Provenance: the image is item `index` of class `class_id`, sampled with the
      # per-item key of (seed, label, index) (DESIGN §3).
      "class_id": tfds.features.Text(),
      "index": tfds.features.Scalar(np.int64),
      "seed": tfds.features.Scalar(np.int64),
  })


def serialize(feats, example):
  """`feats.serialize_example(example)`, but with map entries in a fixed order.

  A tf.train.Example's features are a proto map, and protobuf writes maps in
  hash order, which differs between processes: the same example would get different
  bytes on different workers. Deterministic serialization sorts the map keys.
  """
  encoded = feats.encode_example(example)
  proto = feats._example_serializer.get_tf_example(encoded)  # pylint: disable=protected-access
  return proto.SerializeToString(deterministic=True)


def encode_image(image, encoding="png", jpeg_quality=95):
  """uint8 (H, W, C) → PNG or JPEG bytes (deterministic for a given Pillow)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3:
    raise ShardError(f"Images must be uint8 (H, W, C), got {image.dtype} "
                     f"{image.shape}.")
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  out = io.BytesIO()
  if encoding == "png":
    pil.save(out, format="PNG", optimize=False, compress_level=6)
  elif encoding == "jpeg":
    pil.save(out, format="JPEG", quality=int(jpeg_quality))
  else:
    raise ShardError(f"Unknown image encoding {encoding!r}; choose one of {ENCODINGS}.")
  return out.getvalue()


def to_uint8(images):
  """Sampler output in [−1, 1] → uint8 [0, 255] (round half to even, then clip)."""
  images = np.asarray(images, np.float32)
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def write_atomic(path, records):
  """Writes `records` (bytes) as an ArrayRecord file at `path`, atomically.

  The file is written under a unique temporary name in the same folder and renamed
  over `path` only when closed, so concurrent or retried writes of the same shard
  each leave either nothing or one whole file; a gs:// `path` is written to a local
  temporary folder, then uploaded. Returns (sha256 hex, record count).
  """
  if storage.is_gcs(path):
    with tempfile.TemporaryDirectory(prefix="synthfactory-shard-") as tmp:
      local = pathlib.Path(tmp) / storage.basename(path)
      sha, count = write_atomic(local, records)
      storage.upload(local, path)
    return sha, count
  from array_record.python import array_record_module as ar  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
  count = 0
  try:
    # group_size:1: one record per chunk, so TFDS random access is O(1) (DESIGN §4).
    writer = ar.ArrayRecordWriter(str(tmp), "group_size:1")
    for record in records:
      writer.write(record)
      count += 1
    writer.close()
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()
  return file_sha256(path), count


def file_sha256(path):
  """SHA-256 (hex) of a local or gs:// file."""
  return storage.sha256(path)


def iter_records(path, chunk=256):
  """Yields the records of an ArrayRecord file, `chunk` at a time in memory.

  Raises ShardError if the file cannot be opened or a chunk is damaged.
  """
  from array_record.python import array_record_module as ar  # pylint: disable=g-import-not-at-top
  try:
    reader = ar.ArrayRecordReader(str(path))
    try:
      n = reader.num_records()
      for start in range(0, n, chunk):
        yield from reader.read(start, min(start + chunk, n))
    finally:
      reader.close()
  except Exception as e:  # ArrayRecord raises RuntimeError/ValueError variants.
    raise ShardError(f"Shard {path} cannot be read: {type(e).__name__}: "
                     f"{str(e)[:200]}") from e


def read_records(path):
  """All records of a (small) ArrayRecord file; see iter_records."""
  return list(iter_records(path))
