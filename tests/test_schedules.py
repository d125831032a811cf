"""Noise schedules, respacing and the ε/v/x0 conversions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthfactory.models import schedules


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_decreases_from_one_to_zero(name):
  ab = schedules.NoiseSchedule.create(name, 1000).alphas_cumprod
  assert ab.shape == (1000,) and np.all(np.diff(ab) < 0)
  assert 0.99 < ab[0] < 1 and ab[-1] < 1e-3


def test_linear_betas_match_ddpm():
  ab = schedules.NoiseSchedule.create("linear", 1000).alphas_cumprod
  betas = 1 - ab / np.concatenate([[1.0], ab[:-1]])
  np.testing.assert_allclose(betas[[0, -1]], [1e-4, 0.02], rtol=1e-9)


@pytest.mark.parametrize("spacing", schedules.SPACINGS)
@pytest.mark.parametrize("steps", [1, 2, 20, 128, 999, 1000])
def test_respaced_steps_are_distinct_and_span_the_schedule(spacing, steps):
  s = schedules.NoiseSchedule.create("linear", 1000)
  idx = s.respaced_steps(steps, spacing)
  assert len(idx) == steps and np.all(np.diff(idx) > 0)
  assert idx[-1] == 999 and (steps == 1 or idx[0] == 0)


def test_logsnr_spacing_is_even_in_log_snr():
  s = schedules.NoiseSchedule.create("linear", 1000)
  lam = s.log_snr()[s.respaced_steps(20, "logsnr")]
  gaps = -np.diff(lam)
  # 1.47 here (indices are integers); uniform-in-t spacing gives 11.
  assert gaps.max() / gaps.min() < 2


@pytest.mark.parametrize("prediction", schedules.PREDICTIONS)
def test_target_and_conversion_round_trip(prediction):
  s = schedules.NoiseSchedule.create("cosine", 1000)
  k0, k1 = jax.random.split(jax.random.PRNGKey(0))
  x0 = jax.random.normal(k0, (4, 3, 3, 1))
  noise = jax.random.normal(k1, x0.shape)
  t = jnp.array([0, 10, 500, 999])
  x_t = s.q_sample(x0, t, noise)
  target = schedules.training_target(x0, noise, s.alpha_bar(t), prediction)
  x0_hat, eps_hat = schedules.to_x0_eps(x_t, target, s.alpha_bar(t), prediction)
  np.testing.assert_allclose(eps_hat, noise, atol=2e-3)
  np.testing.assert_allclose(x0_hat[:3], x0[:3], atol=2e-3)  # t = 999: x0 is ill-posed


def test_bad_inputs():
  with pytest.raises(ValueError, match="Unknown noise schedule 'quadratic'"):
    schedules.NoiseSchedule.create("quadratic")
  s = schedules.NoiseSchedule.create()
  with pytest.raises(ValueError, match="between 1 and the schedule length 1000"):
    s.respaced_steps(1001)
  with pytest.raises(ValueError, match="Unknown step spacing"):
    s.respaced_steps(10, "quadratic")
