"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) ‖ p(y))), split-averaged.

The reference implementations (improved-GAN, ADM's evaluator, torch-fidelity) take the
softmax of the Inception's 1008-way logits *without* the fc bias; the FID Inception
extractor hands those logits over (evaluation/inception.py).
"""
import numpy as np


def inception_score(logits, splits=10, shuffle_seed=0):
  """Returns (mean, std) of the score over `splits` equal parts of the samples.

  Each split's marginal p(y) is its own mean prediction, so a split must be a fair
  sample of the set: generated sets are usually stored class by class, so the rows are
  first permuted with `shuffle_seed` (None keeps the given order).
  """
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or logits.shape[1] < 2:
    raise ValueError(f"Logits must be (N, K) with K ≥ 2 classes, got shape "
                     f"{logits.shape}.")
  if not isinstance(splits, (int, np.integer)) or not 1 <= splits <= len(logits):
    raise ValueError(f"splits must be an integer in [1, N = {len(logits)}], got "
                     f"{splits!r}; use fewer splits or more samples.")
  if not np.isfinite(logits).all():
    raise ValueError("Logits contain NaN or inf; check the classifier and its inputs.")
  if shuffle_seed is not None:
    logits = logits[np.random.default_rng(shuffle_seed).permutation(len(logits))]
  log_p = logits - logits.max(axis=1, keepdims=True)
  log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
  scores = []
  for part in np.array_split(log_p, splits):
    p = np.exp(part)
    # A class no sample predicts at all has p(y) = 0 and contributes 0·log 0 = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
      kl = np.where(p > 0, p * (part - np.log(p.mean(axis=0))), 0.0).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))
