"""The FID Inception-v3 in Flax, and its weight files.

The network is the one FID numbers are reported with: TF's inception-2015-12-05 graph as
ported by pytorch-fid (`fid_inception_v3`), i.e. torchvision's Inception-v3 with 1008
classes, no aux head, and the TF quirks: the Mixed_5*/6b-e/7b blocks average-pool
without counting the padding, and Mixed_7c max-pools. Inputs in [−1, 1] are resized to
299×299 like pytorch-fid (bilinear, align_corners=False, no antialiasing). Outputs:
the 2048-d pool3 features (FID) and the 1008-way logits with and without the fc bias
(Inception Score uses the latter; evaluation/inception_score.py).

Module and parameter names follow the PyTorch state dict, so the converter
(convert_inception_weights.py) is a rename plus a kernel transpose. A weight file is an
.npz of arrays named "params/Mixed_5b/branch1x1/conv/kernel", "batch_stats/.../bn/mean",
plus "__meta__" (a JSON string: where the weights came from). Nothing is unpickled.
"""
import functools
import hashlib
import json
import os
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synthfactory.evaluation import feature_extractor

RESOLUTION = 299
NUM_CLASSES = 1008
META_KEY = "__meta__"
# Full float32 everywhere: by default GPUs run f32 convolutions in TF32 and TPUs in
# bfloat16 passes, which would make FID depend on the accelerator. The network is cheap
# next to sampling, so exactness costs little.
_PRECISION = jax.lax.Precision.HIGHEST


class WeightFileError(ValueError):
  """An Inception weight file is missing, malformed or does not fit the network."""


class BasicConv2d(nn.Module):
  """Conv (no bias) → BatchNorm (eps 1e-3, inference statistics) → ReLU."""
  features: int
  kernel_size: tuple
  strides: int = 1
  padding: tuple = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel_size, (self.strides,) * 2,
                padding=((ph, ph), (pw, pw)), use_bias=False, precision=_PRECISION,
                name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _conv(name, features, kernel, strides=1, padding=(0, 0)):
  kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
  padding = (padding, padding) if isinstance(padding, int) else padding
  return BasicConv2d(features, kernel, strides, padding, name=name)


def _pool_branch(x, pool):
  # TF's average pool leaves the zero padding out of the mean (count_include_pad=False).
  if pool == "avg":
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)
  return nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), (2, 2))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = _conv("branch1x1", 64, 1)(x)
    b5 = _conv("branch5x5_2", 64, 5, padding=2)(_conv("branch5x5_1", 48, 1)(x))
    b3 = _conv("branch3x3dbl_1", 64, 1)(x)
    b3 = _conv("branch3x3dbl_2", 96, 3, padding=1)(b3)
    b3 = _conv("branch3x3dbl_3", 96, 3, padding=1)(b3)
    bp = _conv("branch_pool", self.pool_features, 1)(_pool_branch(x, "avg"))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = _conv("branch3x3", 384, 3, strides=2)(x)
    bd = _conv("branch3x3dbl_1", 64, 1)(x)
    bd = _conv("branch3x3dbl_2", 96, 3, padding=1)(bd)
    bd = _conv("branch3x3dbl_3", 96, 3, strides=2)(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = _conv("branch1x1", 192, 1)(x)
    b7 = _conv("branch7x7_1", c7, 1)(x)
    b7 = _conv("branch7x7_2", c7, (1, 7), padding=(0, 3))(b7)
    b7 = _conv("branch7x7_3", 192, (7, 1), padding=(3, 0))(b7)
    bd = _conv("branch7x7dbl_1", c7, 1)(x)
    bd = _conv("branch7x7dbl_2", c7, (7, 1), padding=(3, 0))(bd)
    bd = _conv("branch7x7dbl_3", c7, (1, 7), padding=(0, 3))(bd)
    bd = _conv("branch7x7dbl_4", c7, (7, 1), padding=(3, 0))(bd)
    bd = _conv("branch7x7dbl_5", 192, (1, 7), padding=(0, 3))(bd)
    bp = _conv("branch_pool", 192, 1)(_pool_branch(x, "avg"))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x):
    b3 = _conv("branch3x3_2", 320, 3, strides=2)(_conv("branch3x3_1", 192, 1)(x))
    b7 = _conv("branch7x7x3_1", 192, 1)(x)
    b7 = _conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3))(b7)
    b7 = _conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0))(b7)
    b7 = _conv("branch7x7x3_4", 192, 3, strides=2)(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  pool: str  # "avg" for Mixed_7b; the FID graph max-pools in Mixed_7c.

  @nn.compact
  def __call__(self, x):
    b1 = _conv("branch1x1", 320, 1)(x)
    b3 = _conv("branch3x3_1", 384, 1)(x)
    b3 = jnp.concatenate([_conv("branch3x3_2a", 384, (1, 3), padding=(0, 1))(b3),
                          _conv("branch3x3_2b", 384, (3, 1), padding=(1, 0))(b3)], -1)
    bd = _conv("branch3x3dbl_1", 448, 1)(x)
    bd = _conv("branch3x3dbl_2", 384, 3, padding=1)(bd)
    bd = jnp.concatenate([_conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1))(bd),
                          _conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))(bd)], -1)
    bp = _conv("branch_pool", 192, 1)(_pool_branch(x, self.pool))
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class Logits(nn.Module):
  """The 1008-way fc layer; also returns x·W without the bias (the IS convention)."""
  num_classes: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (x.shape[-1], self.num_classes))
    bias = self.param("bias", nn.initializers.zeros, (self.num_classes,))
    unbiased = jnp.dot(x, kernel, precision=_PRECISION)
    return unbiased + bias, unbiased


class InceptionV3(nn.Module):
  """Images (B, H, W, 1 or 3) in [−1, 1] → {"pool": (B, 2048), "logits",
  "logits_unbiased": (B, 1008)}."""

  @nn.compact
  def __call__(self, images):
    x = resize_bilinear(images, RESOLUTION)
    if x.shape[-1] == 1:  # Grayscale (e.g. Fashion-MNIST): the network wants RGB.
      x = jnp.tile(x, (1, 1, 1, 3))
    x = _conv("Conv2d_1a_3x3", 32, 3, strides=2)(x)
    x = _conv("Conv2d_2a_3x3", 32, 3)(x)
    x = _conv("Conv2d_2b_3x3", 64, 3, padding=1)(x)
    x = _max_pool_3x3_s2(x)
    x = _conv("Conv2d_3b_1x1", 80, 1)(x)
    x = _conv("Conv2d_4a_3x3", 192, 3)(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160),
                     ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE("avg", name="Mixed_7b")(x)
    x = InceptionE("max", name="Mixed_7c")(x)
    pool = x.mean(axis=(1, 2))
    logits, unbiased = Logits(NUM_CLASSES, name="fc")(pool)
    return {"pool": pool, "logits": logits, "logits_unbiased": unbiased}


def resize_bilinear(images, size):
  """(B, H, W, C) → (B, size, size, C) as torch's F.interpolate(mode="bilinear",
  align_corners=False) does it: half-pixel centres, edge clamping, no antialiasing
  (which matters when shrinking: FID numbers depend on it)."""
  _, h, w, _ = images.shape
  rows, cols = _interpolation_matrix(h, size), _interpolation_matrix(w, size)
  x = jnp.einsum("oh,bhwc->bowc", rows, images, precision=_PRECISION)
  return jnp.einsum("pw,bowc->bopc", cols, x, precision=_PRECISION)


@functools.lru_cache(maxsize=16)
def _interpolation_matrix(n_in, n_out):
  """(n_out, n_in) weights of torch's align_corners=False bilinear sampling. Source
  positions are computed in float32 as torch does, so weights match it bit for bit."""
  f32 = np.float32
  source = np.maximum(f32(n_in) / f32(n_out) * (np.arange(n_out, dtype=f32) + f32(0.5))
                      - f32(0.5), f32(0))
  lower = np.minimum(np.floor(source).astype(int), n_in - 1)
  upper = np.minimum(lower + 1, n_in - 1)
  frac = np.clip(source - lower, 0, 1)
  matrix = np.zeros((n_out, n_in), np.float32)
  np.add.at(matrix, (np.arange(n_out), lower), 1 - frac)
  np.add.at(matrix, (np.arange(n_out), upper), frac)
  return matrix


def expected_shapes():
  """{"params/…/kernel": shape, "batch_stats/…/mean": shape, …} of the network."""
  return dict(_expected_shapes())


@functools.cache
def _expected_shapes():  # Tracing the network takes a second or two: do it once.
  variables = jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0),
                             jax.ShapeDtypeStruct((1, RESOLUTION, RESOLUTION, 3),
                                                  jnp.float32))
  return {k: tuple(v.shape) for k, v in flatten(variables).items()}


def flatten(tree, prefix=""):
  """A nested dict of arrays → {"a/b/c": array}."""
  flat = {}
  for key, value in tree.items():
    path = f"{prefix}/{key}" if prefix else key
    flat.update(flatten(value, path) if hasattr(value, "items") else {path: value})
  return flat


def unflatten(flat):
  tree = {}
  for path, value in flat.items():
    *parents, leaf = path.split("/")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def check_shapes(flat, expected):
  """Raises WeightFileError on missing, unexpected or wrongly shaped arrays."""
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  if missing or unexpected:
    raise WeightFileError(
        f"The Inception weights do not match the FID Inception-v3: missing "
        f"{_some(missing)}, unexpected {_some(unexpected)}. Convert the PyTorch FID "
        f"weights with `python -m synthfactory.evaluation.convert_inception_weights`.")
  for name, shape in expected.items():
    if tuple(flat[name].shape) != shape:
      raise WeightFileError(f"Inception parameter {name} has shape "
                            f"{tuple(flat[name].shape)} in the weight file, but the "
                            f"network needs {shape}.")


def _some(names, limit=5):
  if not names:
    return "none"
  more = f" and {len(names) - limit} more" if len(names) > limit else ""
  return ", ".join(names[:limit]) + more


def save_variables(path, flat, meta):
  """Writes a weight file: the flat arrays as float32, plus the JSON `meta`."""
  arrays = {k: np.asarray(v, np.float32) for k, v in flat.items()}
  tmp = f"{path}.tmp"  # Renamed when complete: a killed run leaves no half file.
  with open(tmp, "wb") as f:
    np.savez(f, **arrays, **{META_KEY: np.array(json.dumps(meta, sort_keys=True))})
  os.replace(tmp, path)


def load_variables(path):
  """Reads and checks a weight file → (variables for InceptionV3.apply, meta dict)."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      flat = {k: npz[k] for k in npz.files}
  except FileNotFoundError as e:
    raise WeightFileError(f"No Inception weight file at {path}. Convert the PyTorch FID "
                          f"weights first (convert_inception_weights).") from e
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    # allow_pickle=False turns a pickled array into a ValueError: never unpickle it.
    raise WeightFileError(f"Cannot read {path} as an .npz of plain arrays: {e}") from e
  try:
    meta = json.loads(str(flat.pop(META_KEY)))
  except KeyError:
    meta = {}
  except json.JSONDecodeError as e:
    raise WeightFileError(f"{path}: {META_KEY} is not JSON: {e}") from e
  check_shapes(flat, expected_shapes())
  for name, value in flat.items():
    if not np.issubdtype(value.dtype, np.floating) or not np.isfinite(value).all():
      raise WeightFileError(f"Inception parameter {name} in {path} is not finite "
                            f"floating point (dtype {value.dtype}).")
  return unflatten({k: v.astype(np.float32) for k, v in flat.items()}), meta


def weights_identity(variables):
  """SHA-256 of the arrays (names, shapes, bytes): what the features depend on. Unlike
  a file hash it ignores how the .npz was zipped."""
  h = hashlib.sha256()
  for name, value in sorted(flatten(variables).items()):
    value = np.ascontiguousarray(value, np.float32)
    h.update(f"{name}{value.shape}".encode())
    h.update(value.tobytes())
  return h.hexdigest()


def make_extractor(weights_path, batch_size=50):
  """The FID Inception as a FeatureExtractor. Its metric is called "FID" only when the
  weight file says it holds the reference FID weights (see the converter)."""
  variables, meta = load_variables(weights_path)
  identity = weights_identity(variables)
  variables = jax.device_put(variables)  # Once, not 95 MB per batch.
  apply = jax.jit(InceptionV3().apply)

  def fn(images):
    if images.shape[-1] not in (1, 3):
      raise ValueError(f"The Inception takes grayscale or RGB images, got "
                       f"{images.shape[-1]} channels (shape {images.shape}).")
    out = apply(variables, images)
    return {"features": out["pool"], "logits": out["logits_unbiased"]}

  return feature_extractor.FeatureExtractor(
      name="inception", fn=fn, batch_size=batch_size,
      identity=identity,
      is_fid_network=bool(meta.get("reference_fid_weights", False)))
