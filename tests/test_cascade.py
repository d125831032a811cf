"""Cascade: base → super-resolution chaining, shapes, per-item determinism, validation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthfactory.models import cascade as cascade_lib
from synthfactory.models import diffusion_model as dm
from synthfactory.models import samplers
from synthfactory.models import unet

_SAMPLER = samplers.SamplerConfig(name="ddim", steps=3)
_GUIDED = samplers.SamplerConfig(name="ddim", steps=3, guidance=1.5)  # Null label too.


def _perturbed(params):
  """Moves weights off their zero init (numpy: no compile) so outputs are non-trivial."""
  rng = np.random.default_rng(7)
  return jax.tree_util.tree_map(
      lambda a: a + 0.1 * rng.normal(size=a.shape).astype(np.float32), params)


def _stage(variant, sampler, aug_level=0.0):
  model = dm.DiffusionModel.from_config(unet.unet_config(variant))
  return cascade_lib.Stage(model, _perturbed(model.init(jax.random.PRNGKey(0))),
                           sampler, aug_level)


@pytest.fixture(scope="module")
def stages():
  return _stage("tiny", _GUIDED), _stage("tiny_sr", _SAMPLER, aug_level=0.2)


@pytest.fixture(scope="module")
def cascade(stages):
  return cascade_lib.Cascade(stages)


def _items(indices):
  """Per-item keys as DESIGN §3 builds them: fold_in(fold_in(seed, class), index)."""
  indices = jnp.asarray(indices)
  labels = (indices % 4).astype(jnp.int32)
  keys = jax.vmap(lambda c, i: jax.random.fold_in(
      jax.random.fold_in(jax.random.PRNGKey(0), c), i))(labels, indices)
  return keys, labels


@pytest.fixture(scope="module")
def outputs(cascade):
  return cascade.sample(*_items([0, 1, 2]), all_stages=True)


def test_output_shapes(cascade, outputs):
  base, sr = outputs
  assert base.shape == (3, 8, 8, 3) and sr.shape == (3, 16, 16, 3)
  assert cascade.output_shape == (16, 16, 3)
  assert np.all(np.isfinite(sr)) and np.std(np.asarray(sr)) > 0.05


def test_the_same_batch_is_sampled_bitwise_again(cascade, outputs):
  """What generation relies on: a shard's layout fixes each item's batch and slot, so
  a regenerated shard has the same bytes."""
  again = cascade.sample(*_items([0, 1, 2]), all_stages=True)
  for stage_again, stage_first in zip(again, outputs):
    np.testing.assert_array_equal(stage_again, stage_first)


def test_an_item_ignores_its_batch_mates_position_and_batch_size(cascade, outputs):
  """To float rounding, not bitwise: XLA:CPU picks kernels (YNNPACK or its own, vector
  tiles over the batch rows) by shape and CPU, so GroupNorm statistics and the (B, E)
  embedding projections may sum in another order for another slot or batch size
  (~1e-7 per forward; bitwise on some CPUs, not on an AMD EPYC)."""
  moved = cascade.sample(*_items([7, 5, 1]), all_stages=True)   # item 1: slot 1 → 2
  alone = cascade.sample(*_items([1]), all_stages=True)
  for stage_moved, stage_alone, stage_first in zip(moved, alone, outputs):
    np.testing.assert_allclose(stage_moved[2], stage_first[1], atol=1e-5)
    np.testing.assert_allclose(stage_alone[0], stage_first[1], atol=1e-5)
    # Another item's output differs by far more than rounding.
    assert np.abs(np.asarray(stage_moved[1] - stage_first[1])).max() > 1e-2


def test_sr_stage_upsamples_its_input(cascade, outputs):
  base, sr = outputs
  keys, labels = _items([0, 1, 2])
  other = cascade.run_stage(1, keys, labels, low_res=-base)
  assert np.abs(np.asarray(other - sr)).max() > 1e-2
  with pytest.raises(ValueError, match="Stage 1 needs low_res"):
    cascade.run_stage(1, keys, labels)


def test_chain_validation(stages):
  base, sr = stages
  with pytest.raises(ValueError, match="starts with a base model"):
    cascade_lib.Cascade([sr, base])
  with pytest.raises(ValueError, match="must be a super-resolution model"):
    cascade_lib.Cascade([base, base])
  cfg = unet.unet_config("tiny_sr")
  cfg.image_size, cfg.low_res_size = 32, 16
  sr32 = cascade_lib.Stage(dm.DiffusionModel.from_config(cfg), sr.params, _SAMPLER)
  with pytest.raises(ValueError, match=r"Stage 1 upsamples \(16, 16, 3\) images but "
                                       r"stage 0 makes \(8, 8, 3\)"):
    cascade_lib.Cascade([base, sr32])
  with pytest.raises(ValueError, match="aug_level must be in"):
    cascade_lib.Cascade([base, cascade_lib.Stage(sr.model, sr.params, _SAMPLER, 1.5)])
