"""Image sets to evaluate: a split of a prepared TFDS dataset, read by random access.

A set is named "<tfds name>[:<split>]" (name may carry a config and version, e.g.
"synthetic_fashion_mnist/28x_1x:1.0.0:train") or "<directory>[:<split>]" for a dataset
folder holding dataset_info.json (`tfds.builder_from_directory`). Datasets must be
prepared in ArrayRecord format (`tfds.data_source`, DESIGN §4).

Records are read as raw bytes and decoded a batch at a time in one TF graph call
(parse, decode, optional crop and resize), never one Python call per image; the
encoded image bytes are what the content hash of a set is made of.
"""
import collections
import concurrent.futures
import dataclasses
import functools
import itertools
import pathlib
import re
from typing import Any

from synthfactory.datasets import tfds_open

_VERSION = re.compile(r"^\d+\.(\d+|\*)\.(\d+|\*)$")
# "<head>:<split>", where a split may carry a slice such as "train[:1000]".
_SPLIT = re.compile(r"^(?P<head>.+):(?P<split>[\w-]+(\[[^\]]*\])?)$")


class ImageSetError(ValueError):
  """An image set cannot be opened or read."""


@functools.cache
def _tf():
  import tensorflow as tf  # Heavy; and hide accelerators from TF in a JAX process.
  tf.config.set_visible_devices([], "GPU")
  return tf


def parse_spec(spec, default_split):
  """"name[:version][:split]" or "dir[:split]" → (name or dir, split)."""
  match = _SPLIT.match(spec)
  if not match or _VERSION.match(match["split"]) or pathlib.Path(spec).is_dir():
    return spec, default_split
  return match["head"], match["split"]


@dataclasses.dataclass
class ImageSet:
  """One split of a dataset: len(), encoded image bytes and decoded uint8 batches."""
  description: str
  image_key: str
  image_shape: tuple  # (H, W, C); H and W are None for varying sizes.
  source: Any         # a TFDS data source returning serialized examples.
  _decoders: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

  def __len__(self):
    return len(self.source)

  def encoded(self, indices):
    """The encoded (PNG/JPEG) image bytes of `indices`, as a list of bytes."""
    records = self.source.__getitems__([int(i) for i in indices])
    return list(self._parse(_tf().constant(records, _tf().string)).numpy())

  def decode(self, encoded, image_size=0):
    """Encoded images → uint8 (B, H, W, C). image_size > 0 center-crops each image to a
    square and resizes it to image_size (antialiased bicubic, like PIL's)."""
    if not image_size and None in self.image_shape:
      raise ImageSetError(f"Images of {self.description} vary in size; pass an image "
                          f"size (--image_size) to center-crop and resize them.")
    if self.image_shape[:2] == (image_size, image_size):
      image_size = 0  # Already that size: keep the pixels exactly.
    if image_size not in self._decoders:
      self._decoders[image_size] = self._make_decoder(image_size)
    tf = _tf()
    try:
      return self._decoders[image_size](tf.constant(encoded, tf.string)).numpy()
    except tf.errors.InvalidArgumentError as e:
      raise ImageSetError(f"Cannot decode images of {self.description} to shape "
                          f"{self.image_shape}: {e.message}") from None

  @functools.cached_property
  def _parse(self):
    tf = _tf()
    spec = {self.image_key: tf.io.FixedLenFeature([], tf.string)}
    return tf.function(lambda records: tf.io.parse_example(records, spec)[self.image_key],
                       input_signature=[tf.TensorSpec([None], tf.string)])

  def _make_decoder(self, image_size):
    tf = _tf()
    channels = self.image_shape[-1]
    shape = (image_size, image_size, channels) if image_size else self.image_shape

    def one(encoded):
      image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
      if image_size:
        image = _center_crop_resize(tf, image, image_size)
      return tf.ensure_shape(image, shape)

    return tf.function(
        lambda batch: tf.map_fn(one, batch, fn_output_signature=tf.TensorSpec(
            shape, tf.uint8)), input_signature=[tf.TensorSpec([None], tf.string)])


def _center_crop_resize(tf, image, size):
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  side = tf.minimum(h, w)
  image = image[(h - side) // 2:(h - side) // 2 + side,
                (w - side) // 2:(w - side) // 2 + side]
  image = tf.image.resize(image, (size, size), method="bicubic", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def open_image_set(spec, default_split="train", data_dir=None, image_key="image"):
  """The ImageSet a spec names (see the module docstring)."""
  _tf()  # First: TF must not see the accelerators JAX uses.
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core import decode
  name, split = parse_spec(spec, default_split)
  try:
    builder = tfds_open.prepared_builder(name, data_dir)
    tfds_open.check_split(builder, split, name)
  except tfds_open.DatasetError as e:
    raise ImageSetError(str(e)) from None
  keys = list(builder.info.features.keys()) if builder.info.features else []
  feature = builder.info.features[image_key] if image_key in keys else None
  if not isinstance(feature, tfds.features.Image):
    raise ImageSetError(f"{name!r} has no image feature {image_key!r}; its features "
                        f"are {sorted(keys)}. Pass --image_key.")
  try:
    source = tfds_open.data_source(
        builder, split, name, deserialize_method=decode.DeserializeMethod.RAW_BYTES)
  except tfds_open.DatasetError as e:
    raise ImageSetError(str(e)) from None
  return ImageSet(f"{name}:{split}", image_key, tuple(feature.shape), source)


def batches(image_set, indices, batch_size, image_size=0, decode=True, prefetch=2):
  """Yields (encoded bytes list, uint8 images or None) per batch of `indices`, read
  and decoded ahead in a thread while the caller computes."""
  chunks = (indices[i:i + batch_size] for i in range(0, len(indices), batch_size))

  def read(chunk):
    encoded = image_set.encoded(chunk)
    return encoded, image_set.decode(encoded, image_size) if decode else None

  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    pending = collections.deque(pool.submit(read, c)
                                for c in itertools.islice(chunks, prefetch))
    while pending:
      result = pending.popleft().result()
      pending.extend(pool.submit(read, c) for c in itertools.islice(chunks, 1))
      yield result
