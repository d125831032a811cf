"""Feature statistics of an image set (mean, covariance, count), cached per set and
extractor.

A cache entry is `<cache_dir>/<set>.<extractor>.npz` with a JSON sidecar. It is reused
only when its key matches: the SHA-256 of the image bytes (streamed from the set, cheap
next to running the network), the extractor's name and weights identity, and every
option that changes the numbers; and when the .npz still has the hash the sidecar
recorded. Anything else is recomputed and overwritten, with the reason logged and
reported; a stale entry is never reused.
"""
import dataclasses
import hashlib
import json
import os
import pathlib
import re

from absl import logging
import numpy as np

from synthfactory.evaluation import image_sets

_FORMAT = "synthfactory feature stats v1"


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  mean: np.ndarray  # (D,) float64
  cov: np.ndarray   # (D, D) float64, unbiased (ddof 1) like np.cov
  count: int


class RunningMoments:
  """Mean and covariance of feature batches, in float64, without keeping the features.

  Sums are taken around the first batch's mean: Σ(x − s)(x − s)ᵀ has no catastrophic
  cancellation when the features' mean is large against their spread.
  """

  def __init__(self):
    self.count, self._shift, self._sum, self._outer = 0, None, None, None

  def update(self, features):
    x = np.asarray(features, np.float64)
    if self._shift is None:
      self._shift = x.mean(axis=0)
      self._sum = np.zeros_like(self._shift)
      self._outer = np.zeros((x.shape[1],) * 2)
    x = x - self._shift
    self.count += len(x)
    self._sum += x.sum(axis=0)
    self._outer += x.T @ x

  def stats(self):
    if self.count < 2:
      raise ValueError(f"A covariance needs at least 2 images, got {self.count}.")
    mean = self._sum / self.count
    cov = (self._outer - self.count * np.outer(mean, mean)) / (self.count - 1)
    return FeatureStats(mean + self._shift, (cov + cov.T) / 2, self.count)


@dataclasses.dataclass
class SetFeatures:
  """What an image set gives the metrics."""
  stats: FeatureStats
  sample: np.ndarray | None   # features of a fixed random subset (precision/recall)
  logits: np.ndarray | None   # (count, K) when asked for and the extractor has them
  info: dict                  # set, counts, content hash, cache status


def select_indices(num_examples, max_images=0, seed=0):
  """All indices, or a fixed random subset of max_images (sorted, for reading). Sets are
  often stored class by class, so a prefix would be a biased sample."""
  if not max_images or max_images >= num_examples:
    return np.arange(num_examples)
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(num_examples, max_images, replace=False))


def content_hash(image_set, indices, batch_size=256):
  """SHA-256 of the encoded images at `indices`, in order, each length-prefixed."""
  h = hashlib.sha256()
  for encoded, _ in image_sets.batches(image_set, indices, batch_size, decode=False):
    _update_hash(h, encoded)
  return h.hexdigest()


def _update_hash(h, encoded):
  for item in encoded:
    h.update(len(item).to_bytes(8, "little"))
    h.update(item)


def compute(image_set, extractor, max_images=0, sample_size=0, keep_logits=False,
            image_size=0):
  """Runs `extractor` over the set (or a fixed random subset of max_images)."""
  indices = select_indices(len(image_set), max_images)
  if len(indices) < 2:
    raise ValueError(f"{image_set.description} has {len(indices)} images; the metrics "
                     f"need at least 2.")
  in_sample = np.zeros(len(indices), bool)
  if sample_size:
    in_sample[select_indices(len(indices), sample_size, seed=1)] = True
  moments, h = RunningMoments(), hashlib.sha256()
  samples, logits, start = [], [], 0
  for encoded, images in image_sets.batches(image_set, indices, extractor.batch_size,
                                            image_size):
    _update_hash(h, encoded)
    out = extractor(images)
    moments.update(out["features"])
    if sample_size:
      samples.append(out["features"][in_sample[start:start + len(images)]])
    if keep_logits and "logits" in out:
      logits.append(out["logits"])
    start += len(images)
  info = {"set": image_set.description, "num_examples": len(image_set),
          "num_images": len(indices), "content_sha256": h.hexdigest(),
          "image_size": image_size or None}
  return SetFeatures(moments.stats(), np.concatenate(samples) if sample_size else None,
                     np.concatenate(logits) if logits else None, info)


def cached(image_set, extractor, cache_dir, max_images=0, sample_size=0,
           keep_logits=False, image_size=0):
  """`compute`, reusing `cache_dir`'s entry when its key matches. An extractor without
  an identity, or no cache_dir, always computes."""
  options = dict(max_images=max_images, sample_size=sample_size,
                 keep_logits=keep_logits, image_size=image_size)
  if not cache_dir or not extractor.identity:
    result = compute(image_set, extractor, **options)
    result.info["cache"] = "off" if not cache_dir else "off: extractor has no identity"
    return result
  indices = select_indices(len(image_set), max_images)
  fields = {"format": _FORMAT, "set": image_set.description,
            "content_sha256": content_hash(image_set, indices),
            "extractor": extractor.name, "extractor_identity": extractor.identity,
            "num_examples": len(image_set), **options}
  key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
  path = _cache_path(cache_dir, image_set.description, extractor.name)
  loaded, reason = _load(path, key)
  if loaded is not None:
    loaded.info["cache"] = f"hit: {path}"
    return loaded
  logging.info("Computing feature statistics of %s (%s).", image_set.description, reason)
  result = compute(image_set, extractor, **options)
  if result.info["content_sha256"] != fields["content_sha256"]:
    raise ValueError(f"{image_set.description} changed while it was being read; "
                     f"evaluate it again once it is complete.")
  _save(path, key, fields, result)
  result.info["cache"] = f"{reason}; computed and saved to {path}"
  return result


def _cache_path(cache_dir, description, extractor_name):
  slug = re.sub(r"[^\w.-]+", "_", description).strip("_")[-80:]
  digest = hashlib.sha256(description.encode()).hexdigest()[:8]
  return pathlib.Path(cache_dir) / f"{slug}-{digest}.{extractor_name}.npz"


def _sidecar(path):
  return path.with_suffix(".json")


def _file_sha256(path):
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _load(path, key):
  """(SetFeatures, "") from a valid entry, else (None, why it cannot be used)."""
  if not path.exists() or not _sidecar(path).exists():
    return None, "not cached"
  try:
    sidecar = json.loads(_sidecar(path).read_text())
    if sidecar.get("key") != key:
      return None, "stale cache (the images, extractor or options changed)"
    if _file_sha256(path) != sidecar["npz_sha256"]:
      return None, "cache file modified or corrupt (hash mismatch)"
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
    mean, cov, count = arrays["mean"], arrays["cov"], int(arrays["count"])
    if (mean.ndim != 1 or cov.shape != (len(mean),) * 2 or count != sidecar["count"]
        or not (np.isfinite(mean).all() and np.isfinite(cov).all())):
      return None, "cache arrays malformed"
  except (OSError, ValueError, KeyError, TypeError) as e:
    return None, f"cache unreadable ({type(e).__name__}: {e})"
  info = dict(sidecar["info"])
  return SetFeatures(FeatureStats(mean, cov, count), arrays.get("sample"),
                     arrays.get("logits"), info), ""


def _save(path, key, fields, result):
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {"mean": result.stats.mean, "cov": result.stats.cov,
            "count": np.int64(result.stats.count)}
  for name in ("sample", "logits"):
    if getattr(result, name) is not None:
      arrays[name] = getattr(result, name)
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "wb") as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)
  # The sidecar goes last: an entry interrupted before it fails the hash check.
  sidecar = {"key": key, "fields": fields, "npz_sha256": _file_sha256(path),
             "count": result.stats.count, "info": result.info}
  tmp = _sidecar(path).with_name(_sidecar(path).name + ".tmp")
  tmp.write_text(json.dumps(sidecar, indent=1, sort_keys=True))
  os.replace(tmp, _sidecar(path))
