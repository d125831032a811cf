"""Assertions on pytrees shared by the training tests."""
import jax
import numpy as np


def assert_trees_equal(a, b):
  """The same leaves, bit for bit, in the same order. Only the leaves: a tree restored
  from a checkpoint may come back as another container type than the one saved."""
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
