"""Samplers against data whose exact ε is known in closed form (models/analytic.py)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthfactory.models import analytic
from synthfactory.models import samplers
from synthfactory.models import schedules

SCHEDULE = schedules.NoiseSchedule.create("linear", 1000)
NUM_SAMPLES = 32768
GaussianMixture = lambda means, covs: analytic.GaussianMixture(means, covs, SCHEDULE)


_ROT = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
GAUSSIAN = GaussianMixture(means=[[0.4, -0.3]],
                           covs=[_ROT @ np.diag([0.04, 0.25]) @ _ROT.T])


def _keys(n, seed=0):
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(
      jnp.arange(n))


def _draw(model, config, labels, prediction="eps", seed=0):
  fn = model.eps if prediction == "eps" else model.v
  config = samplers.SamplerConfig(thresholding="none", **config)
  run = jax.jit(lambda keys, labels: samplers.sample(
      fn, SCHEDULE, config, keys, labels, (2,), prediction=prediction,
      num_classes=model.num_classes))
  return np.asarray(run(_keys(len(labels), seed), jnp.asarray(labels)), np.float64)


def _assert_moments(x, mean, cov, bias_allowance=0.0):
  """Each moment within 5 standard errors of its estimator (N samples), plus a
  declared discretisation allowance (relative to the variances)."""
  mean, cov, n = np.asarray(mean, np.float64), np.asarray(cov, np.float64), len(x)
  var = np.diag(cov)
  mean_se = np.sqrt(var / n)
  cov_se = np.sqrt((np.outer(var, var) + cov ** 2) / n)
  np.testing.assert_array_less(np.abs(x.mean(0) - mean),
                               5 * mean_se + bias_allowance * np.sqrt(var))
  np.testing.assert_array_less(np.abs(np.cov(x.T) - cov),
                               5 * cov_se + bias_allowance * np.sqrt(np.outer(var, var)))


# Discretisation bias allowances, relative to the standard deviations, each ~1.5× the
# bias measured on 65,536 samples of this stiff (σ_min = 0.2) Gaussian: first-order
# solvers (DDIM, ancestral DDPM with β̃) err ∝ 1/steps, DPM-Solver++(2M) ∝ ~1/steps².
# Measured: DDPM-1000 γ=0 2.0%, γ=1 0.5%; DDIM-50 13.8%, DDIM-500 ~1.4%;
# DDIM-500 η=1 4.8%; DPM-Solver++-20 3.4%, -50 0.9% (results/sampler_accuracy.json).
@pytest.mark.parametrize("config,prediction,allowance", [
    (dict(name="ddpm", steps=1000, log_var_mix=0.0), "eps", 0.03),
    (dict(name="ddpm", steps=1000, log_var_mix=1.0), "eps", 0.01),
    (dict(name="ddpm", steps=1000, log_var_mix=0.0), "v", 0.03),
    (dict(name="ddim", steps=50), "eps", 0.20),
    (dict(name="ddim", steps=500), "eps", 0.02),
    (dict(name="ddim", steps=500, eta=1.0), "eps", 0.06),
    (dict(name="dpm_solver_pp", steps=20), "eps", 0.05),
    (dict(name="dpm_solver_pp", steps=20), "v", 0.05),
    (dict(name="dpm_solver_pp", steps=50), "eps", 0.015),
], ids=["ddpm-gamma0", "ddpm-gamma1", "ddpm-v", "ddim50", "ddim500", "ddim500-eta1",
        "dpmpp20", "dpmpp20-v", "dpmpp50"])
def test_sampler_reproduces_gaussian_moments(config, prediction, allowance):
  x = _draw(GAUSSIAN, config, np.zeros(NUM_SAMPLES, np.int32), prediction)
  _assert_moments(x, GAUSSIAN.means[0], GAUSSIAN.covs[0], bias_allowance=allowance)


def test_too_few_steps_is_detectably_wrong():
  """The moment test has power: uniform-spaced DPM-Solver++ at 20 steps (55% off) and
  DDIM at 20 steps (~30% off) fail it."""
  for config in (dict(name="dpm_solver_pp", steps=20, spacing="uniform"),
                 dict(name="ddim", steps=20)):
    x = _draw(GAUSSIAN, config, np.zeros(NUM_SAMPLES, np.int32))
    with pytest.raises(AssertionError):
      _assert_moments(x, GAUSSIAN.means[0], GAUSSIAN.covs[0], bias_allowance=0.05)
  x = _draw(GAUSSIAN, dict(name="ddim", steps=3), np.zeros(NUM_SAMPLES, np.int32))
  with pytest.raises(AssertionError):
    _assert_moments(x, GAUSSIAN.means[0], GAUSSIAN.covs[0])


MIXTURE = GaussianMixture(
    means=[[0.6, 0.0], [-0.3, 0.52], [-0.3, -0.52]],
    covs=[np.diag([0.05, 0.02]), np.diag([0.03, 0.03]), np.diag([0.02, 0.06])])


def test_class_conditional_mixture_moments():
  labels = np.arange(3 * 2048) % 3
  x = _draw(MIXTURE, dict(name="dpm_solver_pp", steps=25), labels)
  for k in range(3):
    _assert_moments(x[labels == k], MIXTURE.means[k], MIXTURE.covs[k], 0.05)


def test_unconditional_null_label_samples_the_mixture():
  labels = np.full(NUM_SAMPLES, MIXTURE.num_classes)
  x = _draw(MIXTURE, dict(name="ddim", steps=100), labels)
  means, covs = np.asarray(MIXTURE.means, np.float64), np.asarray(MIXTURE.covs)
  mean = means.mean(0)
  cov = covs.mean(0) + np.cov(means.T, bias=True)
  _assert_moments(x, mean, cov, bias_allowance=0.02)


def _margin_to_other_classes(x, label):
  d = np.linalg.norm(x[:, None, :] - np.asarray(MIXTURE.means)[None], axis=-1)
  others = np.delete(d, label, axis=1).min(1)
  return float(np.mean(others - d[:, label]))


def test_guidance_moves_samples_away_from_other_classes():
  labels = np.arange(3 * 1024) % 3
  margins = []
  for w in (1.0, 2.0, 4.0):
    x = _draw(MIXTURE, dict(name="ddim", steps=50, guidance=w), labels)
    margins.append(np.mean([_margin_to_other_classes(x[labels == k], k)
                            for k in range(3)]))
  assert margins[0] < margins[1] < margins[2], margins


@pytest.mark.parametrize("guidance,batch_per_call", [(1.0, 8), (1.5, 16)])
def test_model_calls_per_step(guidance, batch_per_call):
  """w = 1 evaluates the model once per step on the batch; w ≠ 1 once on 2B."""
  calls = []

  def counted_eps(x, t, labels):
    jax.debug.callback(lambda b: calls.append(b.shape[0]), t)
    return MIXTURE.eps(x, t, labels)

  config = samplers.SamplerConfig("ddim", steps=10, guidance=guidance)
  out = samplers.sample(counted_eps, SCHEDULE, config, _keys(8), jnp.arange(8) % 3,
                        (2,), num_classes=3)
  jax.block_until_ready(out)
  assert calls == [batch_per_call] * 10


def test_guidance_interval_guides_only_the_steps_inside_it():
  config = samplers.SamplerConfig("ddim", steps=10, guidance=1.5,
                                  guidance_interval=(0.3, 3.0))
  guided = samplers.guided_steps(SCHEDULE, config)
  taus = SCHEDULE.respaced_steps(10, "uniform")[::-1]
  sigma = np.sqrt(1 / SCHEDULE.alphas_cumprod[taus] - 1)
  np.testing.assert_array_equal(guided, (sigma > 0.3) & (sigma <= 3.0))
  assert 0 < guided.sum() < 10
  assert samplers.model_evaluations(SCHEDULE, config) == 10 + guided.sum()
  calls = []

  def counted_eps(x, t, labels):
    jax.debug.callback(lambda b: calls.append(b.shape[0]), t)
    return MIXTURE.eps(x, t, labels)

  jax.block_until_ready(samplers.sample(counted_eps, SCHEDULE, config, _keys(8),
                                        jnp.arange(8) % 3, (2,), num_classes=3))
  assert calls == [16 if g else 8 for g in guided]  # Unguided steps: no null pass.

  labels = np.arange(256) % 3
  draw = lambda **kw: _draw(MIXTURE, dict(name="ddim", steps=10, **kw), labels)
  # An interval holding every step is plain guidance; one holding none is w = 1.
  np.testing.assert_array_equal(draw(guidance=1.5, guidance_interval=(0.0, 1e9)),
                                draw(guidance=1.5))
  np.testing.assert_array_equal(draw(guidance=1.5, guidance_interval=(1e8, 1e9)),
                                draw(guidance=1.0))
  part = draw(guidance=1.5, guidance_interval=(0.3, 3.0))
  assert not np.allclose(part, draw(guidance=1.5))
  assert not np.allclose(part, draw(guidance=1.0))


def test_guidance_interval_is_recorded_only_when_set():
  plain = samplers.SamplerConfig("ddim", steps=4, guidance=2.0)
  # Specs and provenance written before the option existed keep their identity.
  assert "guidance_interval" not in plain.to_dict()
  assert plain.fields()["guidance_interval"] == ()
  limited = samplers.SamplerConfig("ddim", steps=4, guidance=2.0,
                                   guidance_interval=[0.3, 6])
  assert limited.guidance_interval == (0.3, 6.0) and hash(limited)
  record = json.loads(json.dumps(limited.to_dict()))
  assert record == limited.to_dict()  # Compares equal to the spec read back.
  assert samplers.SamplerConfig.from_dict(record) == limited


@pytest.mark.parametrize("name", samplers.SAMPLERS)
def test_item_sample_independent_of_batch(name):
  """An item's sample is bit-identical in any batch of the same size (other items,
  other positions), which is what generation relies on: it always samples in batches
  of exactly `batch_size`, padding the last. Alone (batch 1: another compiled program)
  it agrees to float rounding only: on AVX-512 CPUs XLA's batch-1 code rounds 1 ulp
  differently from its batch-64 code."""
  config = dict(name=name, steps=20, eta=1.0 if name == "ddim" else 0.0)
  labels = np.arange(64) % 3
  batch = _draw(MIXTURE, config, labels, seed=7)
  again = _draw(MIXTURE, config, labels, seed=7)
  np.testing.assert_array_equal(batch, again)
  keys = _keys(64, seed=7)
  fn = jax.jit(lambda k, y: samplers.sample(
      MIXTURE.eps, SCHEDULE, samplers.SamplerConfig(thresholding="none", **config),
      k, y, (2,), num_classes=3))
  # Items 0, 17 and 63 at other positions, among other items (other keys, classes).
  items = np.array([0, 17, 63])
  moved = 63 - items
  mixed_keys = _keys(64, seed=9).at[moved].set(keys[items])
  mixed_labels = (labels + 1) % 3
  mixed_labels[moved] = labels[items]
  mixed = np.asarray(fn(mixed_keys, jnp.asarray(mixed_labels)))
  np.testing.assert_array_equal(mixed[moved], batch[items].astype(np.float32))
  for i in items:
    alone = np.asarray(fn(keys[i:i + 1], jnp.asarray(labels[i:i + 1])))
    np.testing.assert_allclose(alone[0], batch[i], rtol=1e-5, atol=1e-6)
  assert not np.array_equal(batch, _draw(MIXTURE, config, labels, seed=8))


def test_static_thresholding_keeps_samples_in_range():
  wide = GaussianMixture(means=[[0.0, 0.0]], covs=[np.eye(2) * 4.0])
  config = samplers.SamplerConfig("ddpm", steps=50, thresholding="static")
  x = samplers.sample(wide.eps, SCHEDULE, config, _keys(512), jnp.zeros(512, int),
                      (2,), num_classes=1)
  assert np.abs(np.asarray(x)).max() <= 1.0 + 1e-6


def test_dynamic_thresholding_rescales_into_range():
  wide = GaussianMixture(means=[[0.0, 0.0]], covs=[np.eye(2) * 4.0])
  config = samplers.SamplerConfig("ddim", steps=20, thresholding="dynamic",
                                  dynamic_percentile=1.0)
  x = np.asarray(samplers.sample(wide.eps, SCHEDULE, config, _keys(512),
                                 jnp.zeros(512, int), (2,), num_classes=1))
  assert np.abs(x).max() <= 1.0 + 1e-6
  assert np.abs(x).max() > 0.9   # rescaled, not just clipped to a shrunken range


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="euler"), "Unknown sampler 'euler'"),
    (dict(guidance=-0.5), "Guidance weight must be ≥ 0"),
    (dict(log_var_mix=1.5), "log_var_mix"),
    (dict(eta=-1.0), "eta must be ≥ 0"),
    (dict(thresholding="soft"), "Unknown thresholding"),
    (dict(steps=0), "positive integer"),
    (dict(guidance=2.0, guidance_interval=(6.0, 0.3)), "guidance_interval must be"),
    (dict(guidance=2.0, guidance_interval=(0.3,)), "guidance_interval must be"),
    (dict(guidance=2.0, guidance_interval="wide"), "guidance_interval must be"),
    (dict(guidance_interval=(0.3, 6.0)), "guidance = 1 is no guidance"),
])
def test_bad_sampler_config(kwargs, message):
  with pytest.raises(ValueError, match=message):
    samplers.SamplerConfig(**kwargs)


def test_steps_beyond_schedule_length():
  config = samplers.SamplerConfig("ddpm", steps=1001)
  with pytest.raises(ValueError, match="between 1 and the schedule length 1000"):
    samplers.make_sampler(lambda p, x, t, y: x, SCHEDULE, config, (2,),
                          prediction="eps", num_classes=1)


def test_unknown_config_key_and_prediction():
  with pytest.raises(ValueError, match="Unknown sampler config keys"):
    samplers.SamplerConfig.from_dict({"name": "ddim", "guidence": 2.0})
  with pytest.raises(ValueError, match="Unknown prediction type"):
    samplers.sample(MIXTURE.eps, SCHEDULE, samplers.SamplerConfig(steps=2), _keys(2),
                    jnp.zeros(2, int), (2,), prediction="x0", num_classes=3)
