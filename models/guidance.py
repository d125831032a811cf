"""Classifier-free guidance in the Imagen convention (DESIGN §3).

ε̃ = w·ε(x, c) + (1 − w)·ε(x, ∅). The combination is affine with weights summing to
one, so it is the same whether the model predicts ε or v.
"""
import jax
import jax.numpy as jnp


def guided(model_fn, weight, *, null_label, with_cond=False):
  """Wraps `model_fn(x, t, labels[, cond])` with guidance weight `weight`.

  w = 1 returns `model_fn` itself: the unconditional branch is never evaluated. Else
  both branches run as one batch of 2B (one model call per step).
  """
  if weight < 0:
    raise ValueError(f"Guidance weight must be ≥ 0, got {weight}.")
  if weight == 1.0:
    return model_fn

  def fn(x, t, labels, *cond):
    twice = lambda a: jnp.concatenate([a, a], axis=0)
    null = jnp.full_like(labels, null_label)
    args = (twice(x), twice(t), jnp.concatenate([labels, null], axis=0))
    if with_cond:
      args += (jax.tree_util.tree_map(twice, cond[0]),)
    out_cond, out_uncond = jnp.split(model_fn(*args), 2, axis=0)
    return weight * out_cond + (1.0 - weight) * out_uncond

  return fn
