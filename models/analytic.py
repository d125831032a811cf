"""Exact denoisers for Gaussian-mixture data: ground truth for testing samplers.

For x0 ~ N(μ, Σ), x_t ~ N(√ᾱ μ, C) with C = ᾱΣ + (1 − ᾱ)I, and the ideal denoiser is
E[ε | x_t] = √(1 − ᾱ) C⁻¹ (x_t − √ᾱ μ). For a class mixture the unconditional ε is the
posterior-weighted sum of the per-class ones. A correct sampler driven by this ε must
reproduce the data's mean and covariance (DESIGN §3).
"""
import jax
import jax.numpy as jnp


class GaussianMixture:
  """Class k ~ N(means[k], covs[k]) with equal priors; the null label is K."""

  def __init__(self, means, covs, schedule):
    self.means = jnp.asarray(means, jnp.float32)
    self.covs = jnp.asarray(covs, jnp.float32)
    self.num_classes = len(means)
    self.schedule = schedule

  def _per_class(self, x_t, t):
    ab = self.schedule.alpha_bar(t)[:, None, None, None]                # (B,1,1,1)
    c = ab * self.covs[None] + (1 - ab) * jnp.eye(x_t.shape[-1])        # (B,K,d,d)
    diff = x_t[:, None, :] - jnp.sqrt(ab[..., 0]) * self.means[None]    # (B,K,d)
    sol = jnp.linalg.solve(c, diff[..., None])[..., 0]
    eps = jnp.sqrt(1 - ab[..., 0]) * sol
    log_density = -0.5 * (jnp.sum(diff * sol, -1) + jnp.linalg.slogdet(c)[1])
    return eps, log_density

  def eps(self, x_t, t, labels):
    """The exact ε for (B, d) inputs; null labels get the mixture's ε."""
    eps_k, log_density = self._per_class(x_t, t)
    uncond = jnp.einsum("bk,bkd->bd", jax.nn.softmax(log_density, -1), eps_k)
    cond = jnp.einsum("bk,bkd->bd", jax.nn.one_hot(labels, self.num_classes), eps_k)
    return jnp.where((labels == self.num_classes)[:, None], uncond, cond)

  def v(self, x_t, t, labels):
    """The exact v = √ᾱ·ε − √(1−ᾱ)·x0."""
    ab = self.schedule.alpha_bar(t)[:, None]
    eps = self.eps(x_t, t, labels)
    x0 = (x_t - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)
    return jnp.sqrt(ab) * eps - jnp.sqrt(1 - ab) * x0
