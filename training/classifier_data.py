"""Classifier input pipeline: real, synthetic or mixed training batches, and evaluation.

Data specs name a dataset and a split:
  "name:split", "name/config:split"  a TFDS dataset prepared as ArrayRecord in
                                     data.data_dir, read with `tfds.data_source`;
  "<dataset folder>:split"           a TFDS dataset folder (e.g. one that our generation
                                     job registered), via `builder_from_directory`;
  "fashion_mnist_idx:train|test"     the Fashion-MNIST idx files (no TFDS needed;
                                     $FASHION_MNIST_DIR or the Debian package's folder).
Splits may be sliced the TFDS way ("train[:90%]").

Mixtures (data.mix): "real" or "synthetic" alone; "concat", both as one dataset (an
epoch is one pass over their union, paper Table 4); "ratio", exactly
`synthetic_fraction` of every batch synthetic (an epoch is one pass over the real data).

Teacher targets (distillation, Hinton et al. 2015): with data.teacher_weight w > 0,
every example's target is (1 - w) · its one-hot label + w · a teacher's class
probabilities for it, softened by data.teacher_temperature T (softmax(log p / T)).
The probabilities come from .npy files of shape (examples, classes), one per source
(data.real_teacher, data.synthetic_teacher), in the order of the whole split (before
data.synthetic_keep picks from it).

Order: each source is read as an endless stream of epochs, epoch e a permutation seeded
with (seed, source, e); the batch of step s takes the slots [s·k, (s+1)·k) of each
stream it draws k items from, and every random choice of its preprocessing comes from a
Generator seeded with (seed, s). A batch is therefore a pure function of (seed, step):
a resumed run needs nothing but its step, mid-epoch included.

Work split (DESIGN §4: per-record Python work is what makes a loader slow): the host
does only what needs the encoded bytes or changes the image size (decode, the center or
random-resized crop, the resize) per image in a thread pool, where Pillow releases the
GIL; JPEGs are decoded at a reduced scale (draft mode) when the crop shrinks anyway.
Small fixed-size datasets are decoded into memory once, and a batch of them is then one
numpy gather. Flips, pad-crops, RandAugment and mixup/cutmix run batched on the device
(training/classifier_augment.py).
"""
import concurrent.futures
import dataclasses
import functools
import io
import math
import os
import pathlib
import re

import numpy as np
import PIL.Image

from synthfactory.datasets import fashion_mnist
from synthfactory.datasets import tfds_open

IDX = "fashion_mnist_idx"
MIXES = ("real", "synthetic", "concat", "ratio")
CROPS = ("none", "center", "inception")
_MAX_PIXELS = 64_000_000  # Larger images are refused (decompression bombs).
_CHUNK = 1024  # Records per read when a dataset is decoded into memory.
_TAGS = {"real": 1, "synthetic": 2}  # Stream ids of the sources' permutations.


class DataError(ValueError):
  """A data spec cannot be read or does not fit the run."""


def parse_spec(spec):
  """'name[/config]:split' (or '<folder>:split') → (name, split); the split is what
  follows the last colon outside brackets, so 'gs://b/ds:train[:5%]' parses."""
  depth = 0
  for i in range(len(spec) - 1, -1, -1):
    depth += {"]": 1, "[": -1}.get(spec[i], 0)
    if spec[i] == ":" and depth == 0:
      if i and spec[i + 1:]:
        return spec[:i], spec[i + 1:]
      break
  raise DataError(f"Data spec {spec!r} is not 'name:split'; write e.g. "
                  f"'{IDX}:train', 'imagenet2012:validation' or "
                  f"'synthetic_imagenet/256x_1x:train'.")


# --- crops ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Crop:
  """The host-side geometry of one image: a box of the decoded image, resized to
  size x size.

  none       the whole image, which must already be size x size;
  center     the central square of `fraction` of the shorter side (0.875: resize the
             shorter side to 256, then center-crop 224);
  inception  a random-resized crop: area in `scale` of the image, aspect ratio in
             `ratio` (log-uniform), 10 tries, else the central crop (Szegedy et al.).
  """
  kind: str
  size: int
  fraction: float = 0.875
  scale: tuple = (0.08, 1.0)
  ratio: tuple = (3 / 4, 4 / 3)

  def __post_init__(self):
    if self.kind not in CROPS:
      raise DataError(f"Unknown crop {self.kind!r}; choose one of {CROPS}.")
    if not 0 < self.fraction <= 1:
      raise DataError(f"crop_fraction {self.fraction} is not in (0, 1].")

  def params(self, rng, n):
    """Per-item random numbers of n crops, drawn at once (None unless inception)."""
    if self.kind != "inception":
      return [None] * n
    log_ratio = np.log(self.ratio)
    return list(zip(rng.uniform(*self.scale, (n, 10)),
                    np.exp(rng.uniform(*log_ratio, (n, 10))),
                    rng.uniform(size=(n, 10)), rng.uniform(size=(n, 10))))

  def box(self, h, w, params):
    """(top, left, height, width) of the crop in an h x w image."""
    if self.kind == "none":
      if (h, w) != (self.size, self.size):
        raise DataError(f"An image is {h}x{w} but data.image_size is {self.size}; set "
                        f"data.train_crop/eval_crop to 'center' to resize the images.")
      return 0, 0, h, w
    if self.kind == "inception":
      for area, ratio, u, v in zip(*params):
        cw = round(math.sqrt(area * h * w * ratio))
        ch = round(math.sqrt(area * h * w / ratio))
        if 0 < cw <= w and 0 < ch <= h:
          return u * (h - ch), v * (w - cw), ch, cw
      ch = min(h, round(w / self.ratio[0]))
      cw = min(w, round(h * self.ratio[1]))
      return (h - ch) / 2, (w - cw) / 2, ch, cw
    side = self.fraction * min(h, w)
    return (h - side) / 2, (w - side) / 2, side, side

  def is_identity(self, h, w):
    return (h, w) == (self.size, self.size) and (
        self.kind == "none" or (self.kind == "center" and self.fraction == 1))


def crops(data):
  """(train crop, eval crop) of a `config.data` block."""
  if data.eval_crop == "inception":
    raise DataError("data.eval_crop='inception' would evaluate on random crops; use "
                    "'center' or 'none'.")
  return (Crop(data.train_crop, data.image_size, data.crop_fraction),
          Crop(data.eval_crop, data.image_size, data.crop_fraction))


def _crop_resize(image, crop, params, mode):
  """Crops a PIL image (opened, maybe not yet decoded) → uint8 (size, size, C)."""
  w, h = image.size
  top, left, ch, cw = crop.box(h, w, params)
  if crop.is_identity(h, w):
    out = image.convert(mode)
  else:
    shrink = min(ch, cw) / crop.size
    if image.format == "JPEG" and shrink >= 2:
      # Decodes at 1/2, 1/4 or 1/8 scale, keeping the crop at least `size` wide.
      image.draft(mode, (math.ceil(w / shrink), math.ceil(h / shrink)))
    sx, sy = image.size[0] / w, image.size[1] / h
    out = image.convert(mode).resize(
        (crop.size, crop.size), PIL.Image.BILINEAR,
        box=(left * sx, top * sy, (left + cw) * sx, (top + ch) * sy))
  array = np.asarray(out, np.uint8)
  return array[..., None] if array.ndim == 2 else array


def _decode(data, crop, params, mode):
  try:
    image = PIL.Image.open(io.BytesIO(data))
  except (OSError, PIL.Image.DecompressionBombError) as e:
    raise DataError(f"An image cannot be decoded: {e}") from e
  with image:
    w, h = image.size  # Known from the header, before decoding.
    if w * h > _MAX_PIXELS:
      raise DataError(f"An image is {w}x{h} pixels, above the limit of {_MAX_PIXELS}; "
                      f"the file is corrupt or not a training image.")
    if crop is None:  # The whole image, as stored.
      return np.asarray(image.convert(mode), np.uint8)
    return _crop_resize(image, crop, params, mode)


def _mode(channels):
  return "L" if channels == 1 else "RGB"


@functools.lru_cache(maxsize=1)
def _pool():
  """Decode threads, shared by all sources (Pillow decodes without the GIL)."""
  return concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1,
                                               thread_name_prefix="decode")


def _map(fn, *items):
  return list(_pool().map(fn, *items, chunksize=1)) if len(items[0]) > 8 else list(
      map(fn, *items))


# --- sources --------------------------------------------------------------------------


class Source:
  """Random access to a labelled image split: len(), and read(indices, crop, rng)."""
  spec: str
  num_classes: int
  class_names: tuple  # Empty when the dataset has only numbered classes.
  channels: int

  def read(self, indices, crop, rng):
    """(uint8 images (n, size, size, C), int32 labels (n,)) of `indices`."""
    raise NotImplementedError


class ArraySource(Source):
  """Decoded images of one size, in memory; an identity crop is a numpy gather."""

  def __init__(self, spec, images, labels, num_classes, class_names=()):
    if images.ndim != 4 or labels.shape != images.shape[:1]:
      raise DataError(f"{spec}: expected images (N, H, W, C) and labels (N,), got "
                      f"{images.shape} and {labels.shape}.")
    self.spec, self.images, self.labels = spec, images, labels.astype(np.int32)
    self.num_classes, self.class_names = num_classes, tuple(class_names)
    self.channels = images.shape[-1]

  def __len__(self):
    return len(self.images)

  def read(self, indices, crop, rng):
    images = self.images[indices]
    if not crop.is_identity(*self.images.shape[1:3]):
      to_pil = lambda im: PIL.Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im)
      images = np.stack(_map(
          lambda im, p: _crop_resize(to_pil(im), crop, p, _mode(self.channels)),
          list(images), crop.params(rng, len(indices))))
    return images, self.labels[indices]


class RecordSource(Source):
  """Encoded images read by index from a TFDS data source, decoded per batch."""

  def __init__(self, spec, data_source, num_classes, class_names, channels):
    self.spec, self._ds = spec, data_source
    self.num_classes, self.class_names = num_classes, class_names
    self.channels = channels

  def __len__(self):
    return len(self._ds)

  def records(self, indices):
    records = self._ds.__getitems__([int(i) for i in indices])
    return ([r["image"] for r in records],
            np.array([r["label"] for r in records], np.int32))

  def read(self, indices, crop, rng):
    encoded, labels = self.records(indices)
    images = _map(lambda data, p: _decode(data, crop, p, _mode(self.channels)), encoded,
                  crop.params(rng, len(indices)))
    return np.stack(images), labels


class SubsetSource(Source):
  """The items `keep` (indices) of another source, renumbered 0 … len(keep)-1: a
  filtered split, e.g. the synthetic images a real-trained classifier recognises."""

  def __init__(self, source, keep, why):
    keep = np.asarray(keep)
    if keep.ndim != 1 or not np.issubdtype(keep.dtype, np.integer) or (
        len(keep) and (keep.min() < 0 or keep.max() >= len(source))):
      raise DataError(f"{why}: expected a 1-D array of indices into {source.spec} "
                      f"({len(source)} examples); recreate it from that split.")
    self.spec = f"{source.spec} ({why}: {len(keep)} of {len(source)})"
    self.num_classes, self.class_names = source.num_classes, source.class_names
    self.channels, self._source, self.keep = source.channels, source, keep

  def __len__(self):
    return len(self.keep)

  def read(self, indices, crop, rng):
    return self._source.read(self.keep[indices], crop, rng)


def open_source(spec, data_dir="", cache_mb=1024):
  """The Source a data spec names. A TFDS split of fixed-size images that fits in
  `cache_mb` MiB decoded is decoded into memory at once."""
  name, split = parse_spec(spec)
  if name == IDX:
    return _open_idx(spec, split)
  data_source = _open_tfds(spec, name, split, data_dir)
  features = data_source.dataset_info.features
  if "image" not in features or "label" not in features or not hasattr(
      features["label"], "num_classes"):
    raise DataError(f"{spec}: a classifier needs an 'image' feature and a ClassLabel "
                    f"'label'; the dataset has {list(features.keys())}.")
  label = features["label"]
  names = tuple(label.names)
  if names == tuple(str(i) for i in range(label.num_classes)):
    names = ()  # ClassLabel(num_classes=N) names its classes '0' … 'N-1'.
  shape = features["image"].shape
  source = RecordSource(spec, data_source, label.num_classes, names, shape[-1])
  if None not in shape and len(source) * math.prod(shape) <= cache_mb * 2**20:
    return _decode_all(source, shape)
  return source


def _open_idx(spec, split):
  match = re.fullmatch(r"(\w+)(?:\[(-?\d*)(%?):(-?\d*)(%?)\])?", split)
  if not match:
    raise DataError(f"{spec}: cannot read the split {split!r}; write e.g. 'train', "
                    f"'test[:500]' or 'train[10%:]'.")
  base, start, start_pct, stop, stop_pct = match.groups()
  try:
    images, labels = fashion_mnist.load(base)
  except fashion_mnist.FashionMnistError as e:
    raise DataError(f"{spec}: {e}") from e
  bound = lambda v, pct: (None if not v else int(v) * len(images) // 100 if pct
                          else int(v))
  keep = slice(bound(start, start_pct), bound(stop, stop_pct))
  return ArraySource(spec, images[keep], labels[keep], fashion_mnist.NUM_CLASSES,
                     fashion_mnist.CLASS_NAMES)


def _open_tfds(spec, name, split, data_dir):
  import tensorflow_datasets as tfds  # Heavy: only runs that read TFDS pay for it.
  try:
    return tfds_open.data_source(tfds_open.builder(name, data_dir), split, name,
                                 decoders={"image": tfds.decode.SkipDecoding()})
  except tfds_open.DatasetError as e:
    raise DataError(f"{spec}: {e}") from None


def _decode_all(source, shape):
  images, labels = np.empty((len(source), *shape), np.uint8), []
  for start in range(0, len(source), _CHUNK):
    encoded, chunk_labels = source.records(range(start, min(start + _CHUNK,
                                                             len(source))))
    decoded = _map(lambda data: _decode(data, None, None, _mode(shape[-1])), encoded)
    images[start:start + len(decoded)] = np.stack(decoded).reshape(-1, *shape)
    labels.append(chunk_labels)
  return ArraySource(source.spec, images, np.concatenate(labels), source.num_classes,
                     source.class_names)


def check_compatible(sources):
  """Raises DataError unless all sources share one label space and channel count."""
  first, *others = sources
  for other in others:
    if other.num_classes != first.num_classes:
      raise DataError(
          f"Label spaces differ: {first.spec} has {first.num_classes} classes, "
          f"{other.spec} has {other.num_classes}. Train and evaluate on datasets with "
          f"the same classes (generate the synthetic set from the real one's class "
          f"plan).")
    if first.class_names and other.class_names and (
        first.class_names != other.class_names):
      i = next(i for i, (a, b) in enumerate(zip(first.class_names, other.class_names))
               if a != b)
      raise DataError(
          f"Label spaces differ: class {i} is {first.class_names[i]!r} in {first.spec} "
          f"but {other.class_names[i]!r} in {other.spec}. The datasets must number the "
          f"same classes in the same order.")
    if other.channels != first.channels:
      raise DataError(f"{first.spec} has {first.channels}-channel images but "
                      f"{other.spec} has {other.channels}; use datasets of one kind.")


# --- the training stream --------------------------------------------------------------


# Generators are seeded with [seed, purpose, ...], so no two uses share a stream.
_PERMUTATION, _BATCH_ORDER, _CROPS = range(3)


@functools.lru_cache(maxsize=8)
def _permutation(n, seed, tag, epoch):
  return np.random.default_rng([seed, _PERMUTATION, tag, epoch]).permutation(n)


def stream(n, seed, tag, start, count):
  """Items [start, start + count) of the endless stream of permutations of range(n)."""
  positions = np.arange(start, start + count)
  epochs, offsets = np.divmod(positions, n)
  out = np.empty(count, np.int64)
  for e in np.unique(epochs):
    at = epochs == e
    out[at] = _permutation(n, seed, tag, int(e))[offsets[at]]
  return out


class TrainData:
  """The training batches of a run: real, synthetic or both, as `mix` says."""

  def __init__(self, sources, mix, batch_size, seed, crop, synthetic_fraction=0.0,
               teacher=None):
    """sources: {"real": Source, "synthetic": Source}, only those the mix uses;
    teacher: {} or, for each of them, float32 targets (len(source), classes)."""
    if mix not in MIXES:
      raise DataError(f"Unknown data.mix {mix!r}; choose one of {MIXES}.")
    needed = {"real": ["real"], "synthetic": ["synthetic"]}.get(mix, ["real",
                                                                      "synthetic"])
    if sorted(sources) != sorted(needed):
      raise DataError(f"data.mix={mix!r} trains on {' and '.join(needed)} data but "
                      f"{' and '.join(sorted(sources)) or 'none'} was given; set "
                      f"data.{' and data.'.join(needed)} (and leave the other empty), "
                      f"or choose another mix.")
    check_compatible(list(sources.values()))
    self.sources, self.mix, self.batch_size, self.seed = sources, mix, batch_size, seed
    self.crop = crop
    self.num_synthetic = 0
    if mix == "ratio":
      self.num_synthetic = round(synthetic_fraction * batch_size)
      if not 0 < synthetic_fraction < 1 or not math.isclose(
          self.num_synthetic, synthetic_fraction * batch_size):
        raise DataError(
            f"data.synthetic_fraction={synthetic_fraction} × batch_size={batch_size} "
            f"must be a whole number of examples strictly between 0 and the batch; "
            f"pick a fraction of the form k/{batch_size}.")
    # An epoch must hold a batch: each source alone, or (concat) their union.
    streams = ([] if mix == "ratio" else
               [(" + ".join(s.spec for s in sources.values()),
                 sum(len(s) for s in sources.values()))] if mix == "concat" else
               [(s.spec, len(s)) for s in sources.values()])
    for spec, n in streams:
      if n < batch_size:
        raise DataError(f"{spec} has {n} examples, fewer than one batch of "
                        f"{batch_size}; lower the batch size or add data.")
    first = next(iter(sources.values()))
    self.num_classes, self.class_names = first.num_classes, first.class_names
    self.channels = first.channels
    self.teacher = teacher or {}
    if self.teacher and sorted(self.teacher) != sorted(sources):
      raise DataError(f"Teacher targets are given for {sorted(self.teacher)} but the "
                      f"run trains on {sorted(sources)}; give data.<role>_teacher for "
                      f"each of them, or set data.teacher_weight=0.")

  @property
  def epoch_size(self):
    """Examples an epoch: the union (real, synthetic, concat) or the real data plus
    its share of synthetic (ratio)."""
    if self.mix == "ratio":
      real = len(self.sources["real"])
      return real * self.batch_size / (self.batch_size - self.num_synthetic)
    return sum(len(s) for s in self.sources.values())

  def describe(self):
    """What fixes the order of batches (stored with checkpoints, compared on resume)."""
    return {"mix": self.mix, "seed": self.seed, "batch_size": self.batch_size,
            "num_synthetic": self.num_synthetic,
            "sources": {k: [s.spec, len(s)] for k, s in sorted(self.sources.items())}}

  def slots(self, step):
    """(role of each slot (B,) as str, index into that role's source (B,))."""
    b, seed = self.batch_size, self.seed
    if self.mix in ("real", "synthetic"):
      n = len(self.sources[self.mix])
      return (np.full(b, self.mix), stream(n, seed, _TAGS[self.mix], step * b, b))
    if self.mix == "concat":
      n_real = len(self.sources["real"])
      union = stream(n_real + len(self.sources["synthetic"]), seed, 0, step * b, b)
      synthetic = union >= n_real
      return (np.where(synthetic, "synthetic", "real"),
              np.where(synthetic, union - n_real, union))
    k = self.num_synthetic
    real = stream(len(self.sources["real"]), seed, _TAGS["real"], step * (b - k), b - k)
    syn = stream(len(self.sources["synthetic"]), seed, _TAGS["synthetic"], step * k, k)
    # Shuffled within the batch, so that no device's shard is all of one kind.
    order = np.random.default_rng([seed, _BATCH_ORDER, step]).permutation(b)
    return (np.array(["real"] * (b - k) + ["synthetic"] * k)[order],
            np.concatenate([real, syn])[order])

  def batch(self, step):
    """The batch of `step`: {"image": uint8 (B, S, S, C), "label": int32 (B,),
    "synthetic": bool (B,)} and, with teacher targets, "teacher": float32 (B, K)."""
    roles, indices = self.slots(step)
    rng = np.random.default_rng([self.seed, _CROPS, step])
    images = np.empty((self.batch_size, self.crop.size, self.crop.size, self.channels),
                      np.uint8)
    labels = np.empty(self.batch_size, np.int32)
    for role, source in self.sources.items():
      at = roles == role
      if at.any():
        images[at], labels[at] = source.read(indices[at], self.crop, rng)
    batch = {"image": images, "label": labels, "synthetic": roles == "synthetic"}
    if self.teacher:
      batch["teacher"] = np.empty((self.batch_size, self.num_classes), np.float32)
      for role, targets in self.teacher.items():
        at = roles == role
        batch["teacher"][at] = targets[indices[at]]
    return batch

  def batches(self, start, end, prefetch=2):
    """Yields the batches of steps [start, end), `prefetch` of them read ahead."""
    with concurrent.futures.ThreadPoolExecutor(prefetch) as pool:
      pending = [pool.submit(self.batch, s) for s in range(start, min(start + prefetch,
                                                                       end))]
      for s in range(start + prefetch, end + prefetch):
        batch = pending.pop(0).result()
        if s < end:
          pending.append(pool.submit(self.batch, s))
        yield batch


def eval_batches(source, batch_size, crop):
  """The whole split in order, in batches padded to batch_size: {"image", "label",
  "mask"} (mask False on padding), the next batch read while one is used."""
  def read(start):
    indices = np.arange(start, min(start + batch_size, len(source)))
    images, labels = source.read(indices, crop, None)
    pad = batch_size - len(indices)
    return {"image": np.pad(images, [(0, pad), (0, 0), (0, 0), (0, 0)]),
            "label": np.pad(labels, (0, pad)),
            "mask": np.arange(batch_size) < len(indices)}
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    starts = list(range(0, len(source), batch_size))
    pending = pool.submit(read, starts[0]) if starts else None
    for nxt in starts[1:] + [None]:
      batch = pending.result()
      pending = pool.submit(read, nxt) if nxt is not None else None
      yield batch


def make_train_data(data, batch_size, seed):
  """The TrainData a `config.data` block describes."""
  specs = {role: data[role] for role in ("real", "synthetic") if data[role]}
  sources = {role: open_source(spec, data.data_dir, data.cache_mb)
             for role, spec in specs.items()}
  whole = dict(sources)
  if data.get("synthetic_keep") and "synthetic" in sources:
    sources["synthetic"] = SubsetSource(sources["synthetic"],
                                        _read_keep(data.synthetic_keep),
                                        data.synthetic_keep)
  if not 0 <= data.get("teacher_weight", 0.0) <= 1:
    raise DataError(f"data.teacher_weight={data.teacher_weight} is not a weight in "
                    f"[0, 1]: 0 trains on the labels alone, 1 on the teacher's "
                    f"probabilities alone.")
  teacher = {role: _read_teacher(data, role, whole[role], getattr(source, "keep", None))
             for role, source in sources.items()} if data.get("teacher_weight") else {}
  return TrainData(sources, data.mix, batch_size, seed, crops(data)[0],
                   data.synthetic_fraction, teacher)


def _read_teacher(data, role, source, keep):
  """The teacher targets of one source: its data.<role>_teacher probabilities over the
  whole split, softened by data.teacher_temperature, at the rows `keep` (if given)."""
  path = data.get(f"{role}_teacher", "")
  fix = (f"write the teacher's class probabilities on {source.spec} there (in split "
         f"order), or set data.teacher_weight=0")
  if not path:
    raise DataError(f"data.teacher_weight={data.teacher_weight} but data.{role}_teacher "
                    f"is empty: {fix}.")
  try:
    probs = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(f"data.{role}_teacher={path}: cannot read it as a .npy array "
                    f"({e}); {fix}.") from None
  if probs.shape != (len(source), source.num_classes) or not np.all(
      np.isfinite(probs)) or probs.min() < 0:
    raise DataError(f"data.{role}_teacher={path}: expected probabilities of shape "
                    f"{(len(source), source.num_classes)}, got {probs.shape} (or "
                    f"negative or non-finite values); {fix}.")
  temperature = data.get("teacher_temperature", 1.0)
  if not temperature > 0:
    raise DataError(f"data.teacher_temperature={temperature} must be > 0 (1 uses the "
                    f"teacher's probabilities as they are).")
  logits = np.log(np.maximum(probs.astype(np.float64), 1e-30)) / temperature
  soft = np.exp(logits - logits.max(1, keepdims=True))
  soft = (soft / soft.sum(1, keepdims=True)).astype(np.float32)
  return soft if keep is None else soft[keep]


def _read_keep(path):
  """The indices of a data.synthetic_keep file (.npy)."""
  try:
    return np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(f"data.synthetic_keep={path}: cannot read it as a .npy array of "
                    f"indices ({e}); point it at the filter's kept-indices file or "
                    f"leave it empty to train on the whole synthetic split.") from None


# --- writing small TFDS datasets ------------------------------------------------------


def write_tfds_dataset(root, name, splits, class_names, encoding="png", version="1.0.0",
                       shards=1):
  """Writes {split: (images, labels)} as a TFDS ArrayRecord dataset; returns its folder.

  The folder is `<root>/<name>/<version>`, readable as "<folder>:split" or, with
  data_dir=root, as "name:split". Images are uint8 (H, W, C) arrays, of one size or
  not (then stored with unknown height and width). For hand-made labelled sets,
  exports and tests; a generation job registers its own shards the same way.
  """
  import tensorflow_datasets as tfds
  from array_record.python import array_record_module

  folder = pathlib.Path(root) / name / version
  folder.mkdir(parents=True, exist_ok=True)
  all_images = [im for images, _ in splits.values() for im in images]
  shapes = {im.shape for im in all_images}
  shape = shapes.pop() if len(shapes) == 1 else (None, None, all_images[0].shape[-1])
  features = tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=shape, encoding_format=encoding),
      "label": tfds.features.ClassLabel(names=list(class_names))})
  split_infos = []
  for split, (images, labels) in splits.items():
    bounds = np.linspace(0, len(images), shards + 1).astype(int)
    for k in range(shards):
      path = folder / f"{name}-{split}.array_record-{k:05d}-of-{shards:05d}"
      writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")
      for i in range(bounds[k], bounds[k + 1]):
        writer.write(features.serialize_example(features.encode_example(
            {"image": images[i], "label": int(labels[i])})))
      writer.close()
    split_infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=np.diff(bounds).tolist(), num_bytes=0))
  tfds.folder_dataset.write_metadata(data_dir=folder, features=features,
                                     split_infos=split_infos, check_data=False)
  return folder
