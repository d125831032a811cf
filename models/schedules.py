"""Discrete noise schedules (DDPM/ADM), respacing, and ε/v/x0 conversions.

A schedule is T discrete steps; step t has ᾱ_t = ∏_{s≤t} (1 − β_s) and
x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε. Samplers walk a *respaced* subset of these steps but
always hand the model the original index t ∈ [0, T) (DESIGN §3), so one trained model
serves 1000-step DDPM and 20-step DPM-Solver++ alike.
"""
import dataclasses
import math

import jax.numpy as jnp
import numpy as np

PREDICTIONS = ("eps", "v")
SPACINGS = ("uniform", "logsnr")


def _linear_betas(num_steps):
  # ADM's scaling keeps the 1000-step betas (1e-4 … 0.02) for any T.
  scale = 1000.0 / num_steps
  return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)


def _cosine_betas(num_steps, s=0.008, max_beta=0.999):
  f = lambda u: math.cos((u + s) / (1 + s) * math.pi / 2) ** 2
  return np.array([min(1 - f((i + 1) / num_steps) / f(i / num_steps), max_beta)
                   for i in range(num_steps)], dtype=np.float64)


_BETAS = {"linear": _linear_betas, "cosine": _cosine_betas}


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseSchedule:
  """ᾱ for every training step, in float64 numpy (cast at use)."""
  name: str
  alphas_cumprod: np.ndarray

  @classmethod
  def create(cls, name="linear", num_steps=1000):
    if name not in _BETAS:
      raise ValueError(f"Unknown noise schedule {name!r}; choose one of "
                       f"{sorted(_BETAS)}.")
    if num_steps < 1:
      raise ValueError(f"num_steps must be ≥ 1, got {num_steps}.")
    return cls(name, np.cumprod(1.0 - _BETAS[name](num_steps)))

  @property
  def num_steps(self):
    return len(self.alphas_cumprod)

  def respaced_steps(self, steps, spacing="uniform"):
    """`steps` distinct indices of the original schedule, ascending, first 0, last T−1.

    "uniform" spaces them evenly in t (ADM); "logsnr" evenly in λ = log(α/σ), which
    multistep solvers such as DPM-Solver++ need to stay accurate at few steps.
    """
    if not 1 <= steps <= self.num_steps:
      raise ValueError(
          f"Sampler steps must be between 1 and the schedule length "
          f"{self.num_steps}, got {steps}; lower `steps` or use a longer schedule.")
    if spacing not in SPACINGS:
      raise ValueError(f"Unknown step spacing {spacing!r}; choose one of {SPACINGS}.")
    if steps == 1:
      return np.array([self.num_steps - 1], np.int32)
    if spacing == "uniform":
      return np.round(np.linspace(0, self.num_steps - 1, steps)).astype(np.int32)
    lam = self.log_snr()          # Decreasing in t; np.interp wants increasing x.
    targets = np.linspace(lam[0], lam[-1], steps)
    idx = np.round(np.interp(-targets, -lam, np.arange(self.num_steps))).astype(int)
    # λ is flat near t = T−1, so neighbours can round to one index: spread them out.
    for k in range(1, steps):
      idx[k] = max(idx[k], idx[k - 1] + 1)
    idx[-1] = self.num_steps - 1
    for k in range(steps - 2, -1, -1):
      idx[k] = min(idx[k], idx[k + 1] - 1)
    return idx.astype(np.int32)

  def log_snr(self):
    """λ_t = log(α_t / σ_t) = ½·log(ᾱ_t / (1 − ᾱ_t)), float64."""
    ab = self.alphas_cumprod
    return 0.5 * (np.log(ab) - np.log1p(-ab))

  def alpha_bar(self, t):
    """ᾱ_t for an integer array t, as float32."""
    return jnp.asarray(self.alphas_cumprod, jnp.float32)[t]

  def q_sample(self, x0, t, noise):
    """Diffuses x0 to step t (per-item t, broadcast over image axes)."""
    ab = _expand(self.alpha_bar(t), x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1 - ab) * noise


def _expand(a, like):
  return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))


def training_target(x0, noise, alpha_bar, prediction):
  """What the network learns to output: ε, or v = √ᾱ·ε − √(1−ᾱ)·x0."""
  check_prediction(prediction)
  if prediction == "eps":
    return noise
  ab = _expand(alpha_bar, x0)
  return jnp.sqrt(ab) * noise - jnp.sqrt(1 - ab) * x0


def to_x0_eps(x_t, model_out, alpha_bar, prediction):
  """Turns a model output (ε or v) into the implied (x̂0, ε̂) pair."""
  check_prediction(prediction)
  ab = _expand(alpha_bar, x_t)
  a, s = jnp.sqrt(ab), jnp.sqrt(1 - ab)
  if prediction == "eps":
    eps = model_out
    return (x_t - s * eps) / a, eps
  v = model_out
  return a * x_t - s * v, s * x_t + a * v


def eps_from_x0(x_t, x0, alpha_bar):
  ab = _expand(alpha_bar, x_t)
  return (x_t - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)


def check_prediction(prediction):
  """Raises a clear ValueError for a prediction type other than ε or v."""
  if prediction not in PREDICTIONS:
    raise ValueError(f"Unknown prediction type {prediction!r}; choose one of "
                     f"{PREDICTIONS}.")
