"""Fréchet distance between two Gaussians, in float64, without `scipy.linalg.sqrtm`.

  d² = |μ1 − μ2|² + tr Σ1 + tr Σ2 − 2 tr sqrt(Σ1^½ Σ2 Σ1^½)

Σ1^½ Σ2 Σ1^½ is symmetric positive semidefinite and similar to Σ1 Σ2, so its trace
square root is Σ sqrt(λ) over its eigenvalues, which `eigh` computes stably. sqrtm of the
non-symmetric product Σ1 Σ2 (the usual FID code) is both slower and, in scipy
1.11.2–1.12, wrong (DESIGN §4).
"""
import numpy as np

# Eigenvalues below −tol·max|λ| mean the matrix is not a covariance; rounding of a
# rank-deficient covariance (fewer samples than dimensions) stays far inside this.
_PSD_TOLERANCE = 1e-8


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID's number)."""
  mu1, sigma1 = _check_gaussian(mu1, sigma1, "first")
  mu2, sigma2 = _check_gaussian(mu2, sigma2, "second")
  if mu1.shape != mu2.shape:
    raise ValueError(f"The two feature statistics have different dimensions "
                     f"({mu1.shape[0]} vs {mu2.shape[0]}); compute both with the same "
                     f"feature extractor.")
  sqrt1 = _psd_sqrt(sigma1, "first")
  product = sqrt1 @ sigma2 @ sqrt1
  eigenvalues = _psd_eigenvalues((product + product.T) / 2, "Σ1^½ Σ2 Σ1^½")
  trace_sqrt = np.sqrt(eigenvalues).sum()
  diff = mu1 - mu2
  d2 = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
  # d² ≥ 0 exactly; identical statistics can round to a tiny negative number.
  return float(max(d2, 0.0))


def _check_gaussian(mu, sigma, which):
  mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
  if mu.ndim != 1:
    raise ValueError(f"The {which} mean must be a vector (D,), got shape {mu.shape}.")
  if sigma.shape != (mu.shape[0], mu.shape[0]):
    raise ValueError(f"The {which} covariance must be square (D, D) with D = "
                     f"{mu.shape[0]} (the mean's length), got shape {sigma.shape}.")
  if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
    raise ValueError(f"The {which} mean or covariance contains NaN or inf; the features "
                     f"it came from are not finite (check the extractor and inputs).")
  scale = max(np.abs(sigma).max(), np.finfo(np.float64).tiny)
  if np.abs(sigma - sigma.T).max() > 1e-6 * scale:
    raise ValueError(f"The {which} covariance is not symmetric; pass a covariance "
                     f"matrix (e.g. np.cov(features, rowvar=False)).")
  return mu, (sigma + sigma.T) / 2


def _psd_eigenvalues(matrix, which):
  eigenvalues = np.linalg.eigvalsh(matrix)
  _check_psd(eigenvalues, which)
  return np.clip(eigenvalues, 0, None)


def _psd_sqrt(sigma, which):
  eigenvalues, vectors = np.linalg.eigh(sigma)
  _check_psd(eigenvalues, f"{which} covariance")
  return (vectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ vectors.T


def _check_psd(eigenvalues, which):
  largest = np.abs(eigenvalues).max(initial=0.0)
  if eigenvalues.size and eigenvalues.min() < -_PSD_TOLERANCE * largest:
    raise ValueError(f"The {which} is not positive semidefinite (eigenvalue "
                     f"{eigenvalues.min():.3g}); pass a covariance matrix.")
