"""Per-item PRNG keys (DESIGN §3): the one place the key convention lives.

Item `index` of class `label` under `global_seed` always gets
`fold_in(fold_in(PRNGKey(global_seed), label), index)`, whatever worker, batch or retry
samples it, so every image is a pure function of (checkpoint, sampler, seed, class,
index).
"""
import jax
import jax.numpy as jnp


def item_key(global_seed, label, index):
  root = jax.random.PRNGKey(global_seed)
  return jax.random.fold_in(jax.random.fold_in(root, label), index)


@jax.jit
def _item_keys(root, labels, indices):
  per_item = lambda c, i: jax.random.fold_in(jax.random.fold_in(root, c), i)
  return jax.vmap(per_item)(labels, indices)


def item_keys(global_seed, labels, indices):
  """(B,) keys for parallel arrays of class labels and per-class indices."""
  labels, indices = jnp.asarray(labels, jnp.uint32), jnp.asarray(indices, jnp.uint32)
  if labels.shape != indices.shape or labels.ndim != 1:
    raise ValueError("labels and indices must be 1-D arrays of one length, got "
                     f"shapes {labels.shape} and {indices.shape}.")
  return _item_keys(jax.random.PRNGKey(global_seed), labels, indices)
