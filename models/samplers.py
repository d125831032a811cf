"""Diffusion samplers: ancestral DDPM (log-variance mixing), DDIM (η), DPM-Solver++(2M).

Classifier-free guidance can be limited to the steps whose noise level σ_t = √((1−ᾱ)/ᾱ)
lies in an interval (Kynkäänniemi et al. 2024): guiding the noisiest steps mostly
costs diversity, guiding the cleanest ones changes little, and every unguided step
is one network evaluation instead of two.

Every sampler is one `lax.scan` over a respaced subset of the training steps and takes a
pure `model_fn(x_t, t, labels)` (or `model_fn(x_t, t, labels, cond)` for models with a
conditioning input such as super-resolution's low-res image), never a Flax module
(DESIGN §3). `t` is the per-item index into the original schedule.

Randomness is per item: item b draws its initial noise from `fold_in(keys[b], 0)` and
the noise of sampler step i from `fold_in(keys[b], i + 1)`, so a sample depends only on
its own key, never on the batch around it.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from synthfactory.models import guidance as guidance_lib
from synthfactory.models import schedules

SAMPLERS = ("ddpm", "ddim", "dpm_solver_pp")
THRESHOLDING = ("none", "static", "dynamic")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
  """Everything the paper tunes at sampling time (§4.2). Hashable: a jit static."""
  name: str = "ddpm"
  steps: int = 1000
  guidance: float = 1.0         # Imagen convention; 1 = plain conditional model.
  log_var_mix: float = 0.0      # γ in log σ² = γ·log β + (1 − γ)·log β̃ (DDPM only).
  eta: float = 0.0              # DDIM stochasticity; 0 = deterministic.
  thresholding: str = "static"  # clip x̂0 to [−1, 1], or Imagen's dynamic rule.
  dynamic_percentile: float = 0.995
  spacing: str = "auto"         # "uniform" in t, "logsnr", or the sampler's default.
  guidance_interval: tuple = ()  # (σ_lo, σ_hi): guide only steps σ_lo < σ_t ≤ σ_hi.

  def __post_init__(self):
    if self.name not in SAMPLERS:
      raise ValueError(f"Unknown sampler {self.name!r}; choose one of {SAMPLERS}.")
    if not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
      raise ValueError(f"Sampler steps must be a positive integer, got {self.steps!r}.")
    if not self.guidance >= 0:
      raise ValueError(f"Guidance weight must be ≥ 0 (1 = no guidance), got "
                       f"{self.guidance}.")
    if not 0 <= self.log_var_mix <= 1:
      raise ValueError(f"log_var_mix (γ) must be in [0, 1], got {self.log_var_mix}.")
    if not self.eta >= 0:
      raise ValueError(f"DDIM eta must be ≥ 0, got {self.eta}.")
    if self.thresholding not in THRESHOLDING:
      raise ValueError(f"Unknown thresholding {self.thresholding!r}; choose one of "
                       f"{THRESHOLDING}.")
    if self.spacing != "auto" and self.spacing not in schedules.SPACINGS:
      raise ValueError(f"Unknown step spacing {self.spacing!r}; choose 'auto' or one "
                       f"of {schedules.SPACINGS}.")
    if not 0 < self.dynamic_percentile <= 1:
      raise ValueError("dynamic_percentile must be in (0, 1], got "
                       f"{self.dynamic_percentile}.")
    object.__setattr__(self, "guidance_interval",
                       _check_interval(self.guidance_interval, self.guidance))

  @classmethod
  def from_dict(cls, d):
    """From a dict or ConfigDict; unknown keys are an error, not silently dropped."""
    d = dict(d)
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"Unknown sampler config keys {sorted(unknown)}; valid keys "
                       f"are {[f.name for f in dataclasses.fields(cls)]}.")
    return cls(**d)

  def fields(self):
    """Every field: what a config holds, so that any can be overridden by a flag."""
    return dataclasses.asdict(self)

  def to_dict(self):
    """What is recorded (specs, manifests, provenance)."""
    d = dataclasses.asdict(self)
    # Recorded only when set, so the specs and provenance of everything sampled before
    # the option existed keep their identity (a dataset is not made stale by it).
    if self.guidance_interval:
      d["guidance_interval"] = list(self.guidance_interval)  # As JSON reads it back.
    else:
      del d["guidance_interval"]
    return d

  @property
  def resolved_spacing(self):
    # DPM-Solver++ is accurate at few steps only when steps are even in log-SNR.
    if self.spacing != "auto":
      return self.spacing
    return "logsnr" if self.name == "dpm_solver_pp" else "uniform"


def _check_interval(interval, guidance):
  """() or a (σ_lo, σ_hi) pair of floats with 0 ≤ σ_lo < σ_hi."""
  try:
    interval = tuple(float(v) for v in interval)
  except (TypeError, ValueError):
    interval = None
  if interval is None or interval and not (
      len(interval) == 2 and 0 <= interval[0] < interval[1] < np.inf):
    raise ValueError("guidance_interval must be () (guide every step) or (σ_lo, σ_hi) "
                     "with 0 ≤ σ_lo < σ_hi, finite, e.g. (0.3, 6.0).")
  if interval and guidance == 1:
    raise ValueError("guidance_interval limits guidance to some steps, but guidance = "
                     "1 is no guidance; set guidance ≠ 1 or drop the interval.")
  return interval


def guided_steps(schedule, config):
  """Per sampler step, noisiest first: whether it evaluates the guided model."""
  taus = schedule.respaced_steps(config.steps, config.resolved_spacing)[::-1]
  if config.guidance == 1:
    return np.zeros(len(taus), bool)
  if not config.guidance_interval:
    return np.ones(len(taus), bool)
  ab = schedule.alphas_cumprod[taus]
  sigma = np.sqrt((1 - ab) / ab)
  lo, hi = config.guidance_interval
  return (sigma > lo) & (sigma <= hi)


def model_evaluations(schedule, config):
  """Network evaluations per image: one a step, two on each guided step."""
  return int(config.steps + guided_steps(schedule, config).sum())


def _threshold(x0, config):
  if config.thresholding == "static":
    return jnp.clip(x0, -1.0, 1.0)
  if config.thresholding == "dynamic":
    # Imagen: per item, s = max(1, p-th percentile of |x̂0|); clip to ±s, rescale.
    flat = jnp.abs(x0.reshape(x0.shape[0], -1))
    s = jnp.maximum(jnp.quantile(flat, config.dynamic_percentile, axis=1), 1.0)
    s = s.reshape((-1,) + (1,) * (x0.ndim - 1))
    return jnp.clip(x0, -s, s) / s
  return x0


def _coefficients(schedule, config):
  """Per-step float64 constants, ordered from the noisiest step to the cleanest.

  Step i goes from respaced time τ_i (ᾱ) to τ_{i−1} (ᾱ_prev), with ᾱ_prev = 1 after
  the last step, so every sampler ends on its x̂0 estimate.
  """
  taus = schedule.respaced_steps(config.steps, config.resolved_spacing)
  ab = schedule.alphas_cumprod[taus]
  ab_prev = np.concatenate([[1.0], ab[:-1]])
  beta = 1.0 - ab / ab_prev
  post_var = beta * (1.0 - ab_prev) / (1.0 - ab)
  # β̃ is 0 at the last step (no noise is added there); take its neighbour for the log.
  post_var[0] = post_var[1] if len(post_var) > 1 else beta[0]
  log_var = config.log_var_mix * np.log(beta) + (1 - config.log_var_mix) * np.log(
      post_var)
  ddim_sigma = config.eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
  lam = schedule.log_snr()[taus]
  with np.errstate(divide="ignore"):
    lam_prev = 0.5 * (np.log(ab_prev) - np.log1p(-ab_prev))   # +inf after the end
  coeffs = dict(
      index=np.arange(len(taus)), t=taus, ab=ab, ab_prev=ab_prev,
      mean_x0=beta * np.sqrt(ab_prev) / (1 - ab),
      mean_xt=(1 - ab_prev) * np.sqrt(1 - beta) / (1 - ab),
      noise_std=np.where(np.arange(len(taus)) > 0, np.exp(0.5 * log_var), 0.0),
      ddim_sigma=ddim_sigma,
      h=lam_prev - lam,
      h_before=np.concatenate([lam[:-1] - lam[1:], [np.inf]]),  # the step before's h
  )
  reverse = lambda a: a[::-1]
  as_jnp = lambda k, v: jnp.asarray(
      reverse(v), jnp.int32 if k in ("index", "t") else jnp.float32)
  coeffs = {k: as_jnp(k, v) for k, v in coeffs.items()}
  coeffs["guide"] = jnp.asarray(guided_steps(schedule, config))
  return coeffs


def _ddpm_step(x, x0, eps, c, noise, state, config):
  del eps, config
  x_prev = c["mean_x0"] * x0 + c["mean_xt"] * x + c["noise_std"] * noise
  return x_prev, state


def _ddim_step(x, x0, eps, c, noise, state, config):
  del config
  sigma = c["ddim_sigma"]
  direction = jnp.sqrt(jnp.maximum(1 - c["ab_prev"] - sigma ** 2, 0.0))
  x_prev = jnp.sqrt(c["ab_prev"]) * x0 + direction * eps + sigma * noise
  return x_prev, state


def _dpm_solver_pp_step(x, x0, eps, c, noise, state, config):
  """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), first order on the first and last step."""
  del eps, noise, config
  prev_x0 = state
  h, h_before = c["h"], c["h_before"]
  first_or_last = jnp.logical_or(jnp.isinf(h), jnp.isinf(h_before))
  r = jnp.where(first_or_last, 1.0, h_before / jnp.where(jnp.isinf(h), 1.0, h))
  d = jnp.where(first_or_last, x0, (1 + 0.5 / r) * x0 - (0.5 / r) * prev_x0)
  sigma, sigma_prev = jnp.sqrt(1 - c["ab"]), jnp.sqrt(1 - c["ab_prev"])
  # exp(−h) → 0 and σ_prev → 0 on the last step: x_prev = d, the clean estimate.
  decay = jnp.where(jnp.isinf(h), 0.0, jnp.exp(-h))
  x_prev = (sigma_prev / sigma) * x - jnp.sqrt(c["ab_prev"]) * (decay - 1.0) * d
  return x_prev, x0


_STEPS = {"ddpm": _ddpm_step, "ddim": _ddim_step, "dpm_solver_pp": _dpm_solver_pp_step}


def _per_item_normal(keys, salt, shape):
  return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, salt), shape))(keys)


def sample(model_fn, schedule, config, keys, labels, shape, *, prediction="eps",
           num_classes, cond=None):
  """Draws one image per (key, label): returns an array (B, *shape).

  Args:
    model_fn: pure function `(x_t, t, labels[, cond]) -> ε or v`.
    schedule: the `NoiseSchedule` the model was trained with.
    config: a `SamplerConfig`.
    keys: (B,) per-item PRNG keys (DESIGN §3: fold_in(fold_in(seed, class), index)).
    labels: (B,) int class labels; `num_classes` is the null (unconditional) label.
    shape: the shape of one image, e.g. (28, 28, 1).
    prediction: "eps" or "v", what model_fn predicts.
    num_classes: number of real classes.
    cond: optional pytree of per-item arrays passed through to model_fn.
  """
  if not isinstance(config, SamplerConfig):
    raise TypeError(f"config must be a SamplerConfig, got {type(config).__name__}; "
                    "build one with SamplerConfig.from_dict(...).")
  schedules.check_prediction(prediction)
  coeffs = _coefficients(schedule, config)
  guided = guidance_lib.guided(model_fn, config.guidance, null_label=num_classes,
                               with_cond=cond is not None)
  labels = jnp.asarray(labels, jnp.int32)
  batch = labels.shape[0]
  step_fn = _STEPS[config.name]
  extra = () if cond is None else (cond,)

  def body(carry, c):
    x, state = carry
    t = jnp.full((batch,), c["t"], jnp.int32)
    if config.guidance_interval:  # A real branch: unguided steps skip the null pass.
      out = jax.lax.cond(c["guide"], lambda a: guided(*a), lambda a: model_fn(*a),
                         (x, t, labels, *extra))
    else:
      out = guided(x, t, labels, *extra)
    x0, eps = schedules.to_x0_eps(x, out.astype(x.dtype), jnp.full((batch,), c["ab"]),
                                  prediction)
    if config.thresholding != "none":
      x0 = _threshold(x0, config)
      eps = schedules.eps_from_x0(x, x0, jnp.full((batch,), c["ab"]))
    noise = _per_item_normal(keys, c["index"] + 1, shape)
    return step_fn(x, x0, eps, c, noise, state, config), None

  x_init = _per_item_normal(keys, 0, shape)
  (x, _), _ = jax.lax.scan(body, (x_init, jnp.zeros_like(x_init)), coeffs)
  return x


def make_sampler(apply_fn, schedule, config, shape, *, prediction, num_classes):
  """Compiles `sample` for a model: returns jitted `fn(params, keys, labels, cond=None)`.

  `apply_fn(params, x_t, t, labels[, cond])`; params are an argument (not baked into
  the compiled program as constants), so one compilation serves every checkpoint.
  """
  if not isinstance(config, SamplerConfig):
    config = SamplerConfig.from_dict(config)
  # Fail here, not inside the trace.
  schedule.respaced_steps(config.steps, config.resolved_spacing)

  @jax.jit
  def run(params, keys, labels, cond=None):
    model_fn = functools.partial(apply_fn, params)
    return sample(model_fn, schedule, config, keys, labels, shape,
                  prediction=prediction, num_classes=num_classes, cond=cond)

  return run
