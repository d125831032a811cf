"""Feature extractors: the networks whose features a Fréchet distance compares.

Any callable images → features is one: FID is the Fréchet distance under the FID
Inception with its reference weights; on small domains (Fashion-MNIST) a classifier
trained on real data is the better feature network, and its metric is reported as
"FD-<name>", never as "FID" (DESIGN §4).

Extractors are created from a spec "<name>[:<arg>]" through a registry, e.g.
"inception:/weights/inception_fid.npz". A module defining another extractor calls
`register("<name>", factory)` at import; the evaluation job imports such modules with
--extractor_imports. The project's own extractors are known without it: "inception"
and "fmnist:<classifier workdir>" (evaluation/fmnist_features.py, imported when first
asked for).
"""
import dataclasses
import importlib
import re
from typing import Callable

import numpy as np

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """fn: float32 images (B, H, W, C) in [−1, 1] → features (B, D), or a dict with
  "features" (B, D) and optionally "logits" (B, K) (for an Inception-style score).
  fn always sees exactly `batch_size` images (the last batch is padded), so a jitted fn
  compiles once. `identity` names everything besides the images that the features
  depend on (e.g. a hash of the weights); cached statistics are keyed by it, and an
  empty identity turns caching off."""
  name: str
  fn: Callable
  batch_size: int = 50
  identity: str = ""
  is_fid_network: bool = False  # True only for the Inception with FID reference weights.

  def __post_init__(self):
    if not _NAME.match(self.name):
      raise ValueError(f"Extractor name {self.name!r} must be lowercase letters, digits, "
                       f"'_', '-' or '.', e.g. 'fmnist'; it names the metric.")
    if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
      raise ValueError(f"Extractor batch_size must be a positive integer, got "
                       f"{self.batch_size!r}.")

  @property
  def metric_name(self):
    return "FID" if self.is_fid_network else f"FD-{self.name}"

  @property
  def score_name(self):
    return "IS" if self.is_fid_network else f"IS-{self.name}"

  def __call__(self, images):
    """Images (b ≤ batch_size, H, W, C), uint8 or float in [−1, 1] → {"features":
    float32 (b, D)[, "logits": (b, K)]} as numpy arrays."""
    images = np.asarray(images)
    n = len(images)
    if images.ndim != 4 or not 0 < n <= self.batch_size:
      raise ValueError(f"Extractor {self.name!r} takes (B, H, W, C) image batches with "
                       f"1 ≤ B ≤ {self.batch_size}, got shape {images.shape}.")
    if images.dtype == np.uint8:
      images = images.astype(np.float32) / 127.5 - 1.0
    padded = np.zeros((self.batch_size,) + images.shape[1:], np.float32)
    padded[:n] = images
    out = self.fn(padded)
    out = dict(out) if isinstance(out, dict) else {"features": out}
    if "features" not in out:
      raise ValueError(f"Extractor {self.name!r} returned a dict without 'features' "
                       f"(keys {sorted(out)}).")
    result = {}
    for key in ("features", "logits"):
      if key in out:
        value = np.asarray(out[key], np.float32)
        if value.ndim != 2 or len(value) != self.batch_size:
          raise ValueError(f"Extractor {self.name!r} returned {key} of shape "
                           f"{value.shape}; expected ({self.batch_size}, D).")
        if not np.isfinite(value[:n]).all():
          raise ValueError(f"Extractor {self.name!r} returned NaN or inf {key}; check "
                           f"its weights and that images are in [−1, 1].")
        result[key] = value[:n]
    return result


_FACTORIES = {}
# Built-in extractors whose module registers them on import, imported on first use so
# that asking for one extractor never loads another's dependencies.
_MODULES = {"fmnist": "synthfactory.evaluation.fmnist_features"}


def register(name, factory):
  """Makes `create(f"{name}:{arg}")` return `factory(arg)` (arg "" when none given)."""
  if not _NAME.match(name):
    raise ValueError(f"Extractor name {name!r} must match {_NAME.pattern}.")
  _FACTORIES[name] = factory


def registered():
  return sorted({*_FACTORIES, *_MODULES})


def create(spec, batch_size=None):
  """The extractor a spec "<name>[:<arg>]" names; batch_size overrides its default."""
  name, _, arg = spec.partition(":")
  if name not in _FACTORIES and name in _MODULES:
    importlib.import_module(_MODULES[name])
  if name not in _FACTORIES:
    raise ValueError(f"Unknown feature extractor {name!r} (from {spec!r}); registered: "
                     f"{registered()}. Import the module that registers it with "
                     f"--extractor_imports=<module>.")
  extractor = _FACTORIES[name](arg)
  if not isinstance(extractor, FeatureExtractor):
    raise ValueError(f"The factory of extractor {name!r} returned "
                     f"{type(extractor).__name__}, not a FeatureExtractor.")
  if batch_size:
    extractor = dataclasses.replace(extractor, batch_size=batch_size)
  return extractor


def _inception(weights_path):
  if not weights_path:
    raise ValueError("The inception extractor needs its weight file: "
                     "--extractor=inception:/path/inception_fid.npz (make it with "
                     "python -m synthfactory.evaluation.convert_inception_weights).")
  from synthfactory.evaluation import inception  # JAX/Flax: only when asked for.
  return inception.make_extractor(weights_path)


register("inception", _inception)
