"""The per-item key convention of DESIGN §3."""
import jax
import numpy as np
import pytest

from synthfactory.datasets import seeding


def test_item_keys_follow_the_convention():
  keys = seeding.item_keys(7, [3, 3, 5], [0, 1, 0])
  for key, (c, i) in zip(keys, [(3, 0), (3, 1), (5, 0)]):
    expected = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(7), c), i)
    np.testing.assert_array_equal(key, expected)
    np.testing.assert_array_equal(key, seeding.item_key(7, c, i))
  assert len({tuple(np.asarray(k)) for k in keys}) == 3


def test_item_keys_independent_of_batch():
  batch = seeding.item_keys(0, np.arange(64) % 10, np.arange(64))
  np.testing.assert_array_equal(seeding.item_keys(0, [7], [17])[0], batch[17])


def test_mismatched_shapes():
  with pytest.raises(ValueError, match="one length"):
    seeding.item_keys(0, [1, 2], [0])
