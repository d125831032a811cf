"""Improved precision and recall (Kynkäänniemi et al. 2019) from k-NN feature manifolds.

A set's manifold is the union of balls around its features, each with the radius of
the distance to that feature's k-th nearest neighbour in the same set. Precision is the
share of generated features inside the real manifold (fidelity); recall the share of
real features inside the generated manifold (coverage).

Distances come from blocked float32 Gram matrices (as in the reference code), so memory
stays at block × N.
"""
import numpy as np


def precision_recall(real_features, fake_features, k=3, block_size=2048):
  """Returns {"precision": float, "recall": float} of fake against real features."""
  real = _check_features(real_features, "real", k)
  fake = _check_features(fake_features, "generated", k)
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"Real and generated features differ in dimension "
                     f"({real.shape[1]} vs {fake.shape[1]}); use one feature extractor.")
  real_radii = knn_radii(real, k, block_size)
  fake_radii = knn_radii(fake, k, block_size)
  fake_covered = np.zeros(len(fake), bool)
  real_covered = np.zeros(len(real), bool)
  for start in range(0, len(fake), block_size):
    d2 = _squared_distances(fake[start:start + block_size], real)
    fake_covered[start:start + block_size] = (d2 <= real_radii[None] ** 2).any(axis=1)
    real_covered |= (d2 <= fake_radii[start:start + block_size, None] ** 2).any(axis=0)
  return {"precision": float(fake_covered.mean()), "recall": float(real_covered.mean())}


def knn_radii(features, k, block_size=2048):
  """Distance from each feature to its k-th nearest neighbour in the same set."""
  radii = np.empty(len(features), np.float32)
  for start in range(0, len(features), block_size):
    d2 = _squared_distances(features[start:start + block_size], features)
    # Index k, not k − 1: the point itself sits at distance 0 in its own row.
    radii[start:start + block_size] = np.sqrt(np.partition(d2, k, axis=1)[:, k])
  return radii


def _squared_distances(a, b):
  d2 = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None]
  return np.maximum(d2, 0)


def _check_features(features, which, k):
  features = np.asarray(features)
  if features.ndim != 2:
    raise ValueError(f"The {which} features must be (N, D), got shape {features.shape}.")
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}.")
  if len(features) <= k:
    raise ValueError(f"Need more than k = {k} {which} features for k-NN radii, got "
                     f"{len(features)}; lower k or add samples.")
  if not np.isfinite(features).all():
    raise ValueError(f"The {which} features contain NaN or inf.")
  return features.astype(np.float32)
