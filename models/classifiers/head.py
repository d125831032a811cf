"""The head every classifier ends in: sow the penultimate features (what
classifiers.apply_with_features returns), dropout, a linear layer to float32 logits."""
import flax.linen as nn
import jax.numpy as jnp


def logits(module, features, train, *, num_classes, dropout, dtype,
           kernel_init=nn.linear.default_kernel_init):
  """Called inside `module`'s compact __call__; the layer's parameters are `head`."""
  module.sow("intermediates", "features", features)
  x = nn.Dropout(dropout, deterministic=not train)(features)
  return nn.Dense(num_classes, dtype=dtype, kernel_init=kernel_init,
                  name="head")(x).astype(jnp.float32)
