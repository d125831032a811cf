"""Training batches: random-access sources read in a deterministic, resumable order.

The batch of step s is a pure function of (seed, s): epoch e = s // steps_per_epoch
reads a permutation drawn from numpy's Generator seeded with (seed, e), and step s
takes the slice s % steps_per_epoch of it (the last partial batch of an epoch is
dropped). A resumed run therefore needs nothing but its step to continue the order.
"""
import collections
import concurrent.futures
import functools
import itertools

import numpy as np
import PIL.Image

from synthfactory.datasets import fashion_mnist
from synthfactory.datasets import tfds_open


class InputError(ValueError):
  """The training data cannot be read or does not fit the run."""


class ArraySource:
  """In-memory images (uint8 in [0, 255], or float in [-1, 1]) with int labels."""

  def __init__(self, images, labels):
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or labels.shape != images.shape[:1]:
      raise InputError(f"Expected images (N, H, W, C) and labels (N,), got "
                       f"{images.shape} and {labels.shape}.")
    self.images, self.labels = images, labels.astype(np.int32)

  def __len__(self):
    return len(self.images)

  def read(self, indices):
    return {"image": to_float(self.images[indices]), "label": self.labels[indices]}


class TfdsSource:
  """A prepared TFDS dataset read through `tfds.data_source` (random access).

  image_size > 0 center-crops and resizes every image to that square size (for
  datasets of varying sizes such as imagenet2012); 0 needs fixed-size images.
  """

  def __init__(self, name, split, data_dir=None, max_examples=0, image_size=0):
    try:
      self._ds = tfds_open.data_source(tfds_open.builder(name, data_dir), split, name)
    except tfds_open.DatasetError as e:
      raise InputError(f"config.data ({name}:{split}): {e}") from None
    self._len = min(len(self._ds), max_examples or len(self._ds))
    self._image_size = image_size

  def __len__(self):
    return self._len

  def read(self, indices):
    records = [self._ds[int(i)] for i in indices]
    images = [r["image"] for r in records]
    if self._image_size:
      images = [center_crop_resize(im, self._image_size) for im in images]
    elif len({im.shape for im in images}) > 1:
      raise InputError("TFDS images differ in size; set config.data.image_size to "
                       "center-crop and resize them, or use a fixed-size dataset.")
    return {"image": to_float(np.stack(images)),
            "label": np.array([r["label"] for r in records], np.int32)}


def center_crop_resize(image, size):
  """The central square of a uint8 (H, W, C) image, resized to size × size."""
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  crop = image[top:top + side, left:left + side]
  # Pillow's resize widens the filter when shrinking, so downscaling is antialiased.
  return np.stack([np.asarray(PIL.Image.fromarray(crop[..., c]).resize(
      (size, size), PIL.Image.BICUBIC)) for c in range(crop.shape[-1])], axis=-1)


def to_float(images):
  """uint8 [0, 255] → float32 [−1, 1]; float images are taken to be in [−1, 1]."""
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 127.5 - 1.0
  return images.astype(np.float32)


def make_source(data):
  """The source a `config.data` block names: fashion_mnist or tfds."""
  if data.source == "fashion_mnist":
    images, labels = fashion_mnist.load(data.split, data.dir or None)
    n = data.max_examples or len(images)
    return ArraySource(images[:n], labels[:n])
  if data.source == "tfds":
    return TfdsSource(data.name, data.split, data.data_dir, data.max_examples,
                      data.image_size)
  raise InputError(f"Unknown data source {data.source!r}; use 'fashion_mnist' or "
                   f"'tfds' (or pass arrays to the trainer's Python API).")


def steps_per_epoch(num_examples, batch_size):
  if num_examples < batch_size:
    raise InputError(f"The dataset has {num_examples} examples, fewer than one batch "
                     f"of {batch_size}; lower the batch size or add data.")
  return num_examples // batch_size


def data_position(num_examples, batch_size, step):
  """Where the input order stands before `step`: (epoch, batch within the epoch)."""
  epoch, batch = divmod(step, steps_per_epoch(num_examples, batch_size))
  return {"epoch": epoch, "batch_in_epoch": batch}


@functools.lru_cache(maxsize=2)
def _permutation(num_examples, seed, epoch):
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(num_examples, batch_size, seed, step):
  """The example indices of the batch of `step`."""
  pos = data_position(num_examples, batch_size, step)
  start = pos["batch_in_epoch"] * batch_size
  return _permutation(num_examples, seed, pos["epoch"])[start:start + batch_size]


def batches(source, batch_size, seed, start_step, end_step, prefetch=2):
  """Yields the batches of steps [start_step, end_step), read ahead in a thread."""
  read = lambda step: source.read(batch_indices(len(source), batch_size, seed, step))
  steps = iter(range(start_step, end_step))
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    pending = collections.deque(
        pool.submit(read, s) for s in itertools.islice(steps, prefetch))
    while pending:
      batch = pending.popleft().result()
      pending.extend(pool.submit(read, s) for s in itertools.islice(steps, 1))
      yield batch
