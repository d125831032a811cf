"""Metric math: Fréchet distance, streaming moments, Inception Score, precision/recall."""
import numpy as np
import pytest

from synthfactory.evaluation import frechet
from synthfactory.evaluation import inception_score
from synthfactory.evaluation import precision_recall
from synthfactory.evaluation import reference_stats


def _random_cov(rng, d, n=None):
  x = rng.standard_normal((n or 3 * d, d)) @ rng.standard_normal((d, d))
  return np.cov(x, rowvar=False)


def test_diagonal_covariances_match_closed_form():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
  v1, v2 = rng.uniform(0.1, 5, 6), rng.uniform(0.1, 5, 6)
  expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
  got = frechet.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_commuting_covariances_match_closed_form():
  rng = np.random.default_rng(1)
  q, _ = np.linalg.qr(rng.standard_normal((5, 5)))  # shared eigenvectors
  v1, v2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
  mu = rng.standard_normal(5)
  expected = ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
  got = frechet.frechet_distance(mu, q @ np.diag(v1) @ q.T, mu, q @ np.diag(v2) @ q.T)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_non_commuting_against_eigenvalues_of_product():
  rng = np.random.default_rng(2)
  s1, s2 = _random_cov(rng, 8), _random_cov(rng, 8)
  mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
  # Independent route: Σ1Σ2 is similar to Σ1^½Σ2Σ1^½, so tr sqrt = Σ sqrt(eig(Σ1Σ2)).
  trace_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()
  expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
  np.testing.assert_allclose(frechet.frechet_distance(mu1, s1, mu2, s2), expected,
                             rtol=1e-8)


def test_symmetric_and_zero_for_identical():
  rng = np.random.default_rng(3)
  s1, s2 = _random_cov(rng, 16), _random_cov(rng, 16)
  mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
  np.testing.assert_allclose(frechet.frechet_distance(mu1, s1, mu2, s2),
                             frechet.frechet_distance(mu2, s2, mu1, s1), rtol=1e-9)
  assert frechet.frechet_distance(mu1, s1, mu1, s1) < 1e-9 * np.trace(s1)


def test_rank_deficient_covariance_is_fine():
  # Fewer samples than dimensions (small evaluations): Σ is singular, still PSD.
  rng = np.random.default_rng(4)
  x, y = rng.standard_normal((10, 32)), rng.standard_normal((10, 32)) + 1
  d = frechet.frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0),
                               np.cov(y, rowvar=False))
  assert np.isfinite(d) and d > 32 * 0.5


@pytest.mark.parametrize("args, match", [
    ((np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "different dimensions"),
    ((np.zeros(3), np.eye(4), np.zeros(3), np.eye(3)), "must be square"),
    ((np.zeros(3), np.ones((3, 2)), np.zeros(3), np.eye(3)), "must be square"),
    ((np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3)), "must be a vector"),
    ((np.array([0, np.nan, 0]), np.eye(3), np.zeros(3), np.eye(3)), "NaN"),
    ((np.zeros(3), np.eye(3), np.zeros(3), np.diag([1, np.inf, 1])), "NaN"),
    ((np.zeros(2), np.array([[1, 0.5], [0, 1]]), np.zeros(2), np.eye(2)), "symmetric"),
    ((np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2)), "semidefinite"),
])
def test_bad_input(args, match):
  with pytest.raises(ValueError, match=match):
    frechet.frechet_distance(*args)


def test_running_moments_match_np_cov():
  rng = np.random.default_rng(5)
  x = rng.standard_normal((103, 7)) * 0.01 + 1e4  # mean ≫ spread: cancellation-prone
  moments = reference_stats.RunningMoments()
  for start in range(0, len(x), 16):
    moments.update(x[start:start + 16])
  stats = moments.stats()
  assert stats.count == 103
  np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
  np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-7, atol=1e-12)


def test_inception_score_of_one_repeated_image_is_one():
  logits = np.tile(np.random.default_rng(6).standard_normal(1008), (50, 1))
  mean, std = inception_score.inception_score(logits, splits=5)
  np.testing.assert_allclose(mean, 1.0, atol=1e-9)
  assert std < 1e-9


def test_inception_score_of_confident_uniform_predictions_is_num_classes():
  k = 7
  logits = 50.0 * np.eye(k)[np.arange(10 * k) % k]
  np.testing.assert_allclose(inception_score.inception_score(logits, splits=1)[0], k,
                             rtol=1e-6)
  mean, std = inception_score.inception_score(logits, splits=10, shuffle_seed=None)
  np.testing.assert_allclose([mean, std], [k, 0], atol=1e-5)


def test_inception_score_shuffles_class_ordered_sets():
  # Stored class by class, unshuffled splits would each see one class: IS ≈ 1.
  logits = 50.0 * np.eye(4)[np.repeat(np.arange(4), 100)]
  assert inception_score.inception_score(logits, 4, shuffle_seed=None)[0] < 1.01
  assert inception_score.inception_score(logits, 4)[0] > 3.5


def test_inception_score_bad_input():
  with pytest.raises(ValueError, match="splits"):
    inception_score.inception_score(np.zeros((3, 5)), splits=4)
  with pytest.raises(ValueError, match="NaN"):
    inception_score.inception_score(np.full((3, 5), np.nan), splits=1)
  with pytest.raises(ValueError, match=r"\(N, K\)"):
    inception_score.inception_score(np.zeros(5), splits=1)


def _brute_force_pr(real, fake, k):
  d = lambda a, b: np.linalg.norm(a[:, None] - b[None], axis=-1)
  r_real = np.sort(d(real, real), axis=1)[:, k]
  r_fake = np.sort(d(fake, fake), axis=1)[:, k]
  precision = (d(fake, real) <= r_real[None]).any(1).mean()
  recall = (d(real, fake) <= r_fake[None]).any(1).mean()
  return precision, recall


def test_precision_recall_matches_brute_force():
  rng = np.random.default_rng(7)
  real = rng.standard_normal((120, 5))
  fake = rng.standard_normal((90, 5)) * 0.5 + 0.7
  got = precision_recall.precision_recall(real, fake, k=3, block_size=32)
  np.testing.assert_allclose([got["precision"], got["recall"]],
                             _brute_force_pr(real, fake, 3))


def test_precision_recall_limits():
  rng = np.random.default_rng(8)
  real = rng.standard_normal((100, 4))
  same = precision_recall.precision_recall(real, real.copy())
  assert same == {"precision": 1.0, "recall": 1.0}
  far = precision_recall.precision_recall(real, real + 100)
  assert far == {"precision": 0.0, "recall": 0.0}
  # Mode collapse: all samples near one real point → faithful but no coverage.
  collapsed = precision_recall.precision_recall(real, real[:1] + 1e-3 * real[:50])
  assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.2


def test_precision_recall_bad_input():
  with pytest.raises(ValueError, match="more than k"):
    precision_recall.precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)
  with pytest.raises(ValueError, match="dimension"):
    precision_recall.precision_recall(np.zeros((10, 2)), np.zeros((10, 3)))
