"""The U-Net, the DiffusionModel wrapper, text tables and noise augmentation."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthfactory.models import diffusion_model as dm
from synthfactory.models import text_embeddings
from synthfactory.models import unet


def _perturbed(params, seed=1, scale=0.1):
  """Moves every weight off its (often zero) init so each input path shows up
  (numpy, so no compilation)."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda a: a + scale * rng.normal(size=a.shape).astype(np.float32), params)


def _table(num_classes, dim, seed):
  emb = np.random.default_rng(seed).normal(size=(num_classes, 3, dim))
  return text_embeddings.make_text_table(emb.astype(np.float32), num_classes)


@pytest.fixture(scope="module")
def tiny():
  cfg = unet.unet_config("tiny")
  cfg.dropout = 0.5   # Inert unless train=True (the fixture's apply never trains).
  model = dm.DiffusionModel.from_config(cfg)
  params = _perturbed(model.init(jax.random.PRNGKey(0)))
  return model, params, jax.jit(model.apply)


@pytest.fixture(scope="module")
def tiny_sr():
  model = dm.DiffusionModel.from_config(unet.unet_config("tiny_sr"))
  params = _perturbed(model.init(jax.random.PRNGKey(0)))
  return model, params, jax.jit(model.apply)


def _inputs(model):
  """A batch of two noisy images and their steps."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2,) + model.image_shape)
  return x, jnp.array([10, 900], jnp.int32)


def test_base_output_shape_and_finite(tiny):
  model, params, apply = tiny
  x, t = _inputs(model)
  out = apply(params, x, t, jnp.array([0, model.num_classes]))
  assert out.shape == x.shape
  assert np.all(np.isfinite(out))


def test_untrained_model_predicts_zero(tiny):
  model, _, apply = tiny
  params = model.init(jax.random.PRNGKey(0))
  x, t = _inputs(model)
  np.testing.assert_array_equal(apply(params, x, t, jnp.array([0, 1])), 0.0)


def test_class_label_changes_output(tiny):
  model, params, apply = tiny
  x, t = _inputs(model)
  out_a = apply(params, x, t, jnp.array([0, 1]))
  out_b = apply(params, x, t, jnp.array([1, model.num_classes]))  # incl. null label
  assert np.all(np.abs(np.asarray(out_a - out_b)).reshape(2, -1).max(-1) > 1e-3)


def test_timestep_changes_output(tiny):
  model, params, apply = tiny
  x, t = _inputs(model)
  labels = jnp.array([0, 1])
  assert np.abs(np.asarray(apply(params, x, t, labels) -
                           apply(params, x, t + 50, labels))).max() > 1e-3


def test_dropout_only_in_training(tiny):
  model, params, apply = tiny
  x, t = _inputs(model)
  labels = jnp.array([0, 1])
  train = jax.jit(lambda k: model.apply(params, x, t, labels, train=True,
                                        rngs={"dropout": k}))
  first = train(jax.random.PRNGKey(0))
  assert np.abs(np.asarray(first - train(jax.random.PRNGKey(1)))).max() > 1e-4
  assert np.abs(np.asarray(first - apply(params, x, t, labels))).max() > 1e-4


def test_sr_output_shape_and_conditioning(tiny_sr):
  model, params, apply = tiny_sr
  x, t = _inputs(model)
  low = jax.random.uniform(jax.random.PRNGKey(3), (2,) + model.low_res_shape, minval=-1)
  labels = jnp.array([0, 1])
  cond = {"low_res": low, "aug_level": jnp.zeros(2)}
  out = apply(params, x, t, labels, cond)
  assert out.shape == x.shape
  other_low = apply(params, x, t, labels, dict(cond, low_res=-low))
  other_aug = apply(params, x, t, labels, dict(cond, aug_level=jnp.full(2, 0.3)))
  assert np.abs(np.asarray(out - other_low)).max() > 1e-3
  assert np.abs(np.asarray(out - other_aug)).max() > 1e-3


def test_sr_needs_low_res_and_base_refuses_it(tiny, tiny_sr):
  sr_model, sr_params, _ = tiny_sr
  x, t = _inputs(sr_model)
  with pytest.raises(ValueError, match="super-resolution U-Net: pass low_res"):
    sr_model.apply(sr_params, x, t, jnp.array([0, 1]))
  small = {"low_res": jnp.zeros((2, 4, 4, 3)), "aug_level": jnp.zeros(2)}
  with pytest.raises(ValueError, match=r"this model upsamples \(8, 8, 3\) images"):
    sr_model.apply(sr_params, x, t, jnp.array([0, 1]), small)
  model, params, _ = tiny
  x, t = _inputs(model)
  cond = {"low_res": jnp.zeros((2, 4, 4, 3)), "aug_level": jnp.zeros(2)}
  with pytest.raises(ValueError, match="low_res was given to a base"):
    model.apply(params, x, t, jnp.array([0, 1]), cond)
  with pytest.raises(ValueError, match="Unknown cond keys"):
    model.apply(params, x, t, jnp.array([0, 1]), {"lowres": cond["low_res"]})


def test_text_context_changes_output():
  cfg = unet.unet_config("tiny")
  cfg.context_dim = 8
  table_a, table_b = _table(cfg.num_classes, 8, seed=0), _table(cfg.num_classes, 8, seed=1)
  model = dm.DiffusionModel.from_config(cfg, table_a)
  params = _perturbed(model.init(jax.random.PRNGKey(0)))
  x, t = _inputs(model)
  labels = jnp.array([0, cfg.num_classes])

  @jax.jit  # The table as an argument: one compilation serves both tables.
  def apply(table):
    return dataclasses.replace(model, text_table=table).apply(params, x, t, labels)

  out_a, out_b = apply(table_a), apply(table_b)
  # Class 0's prompt differs between the tables; the null prompt is zeros in both.
  assert np.abs(np.asarray(out_a[0] - out_b[0])).max() > 1e-3
  np.testing.assert_array_equal(out_a[1], out_b[1])
  with pytest.raises(ValueError, match="cross-attends to text"):
    dm.DiffusionModel.from_config(cfg)
  with pytest.raises(ValueError, match=r"must be shaped \(5, L, 8\)"):
    dm.DiffusionModel.from_config(cfg, np.zeros((4, 3, 8)))


def test_load_text_table(tmp_path):
  path = tmp_path / "emb.npy"
  emb = np.arange(4 * 3 * 2, dtype=np.float64).reshape(4, 3, 2)
  np.save(path, emb)
  table = text_embeddings.load_text_table(path, num_classes=4)
  assert table.shape == (5, 3, 2) and table.dtype == np.float32
  np.testing.assert_array_equal(table[:4], emb)
  np.testing.assert_array_equal(table[4], 0.0)
  np.save(path, emb[:, 0])                                   # pooled: (classes, D)
  assert text_embeddings.load_text_table(path, num_classes=4).shape == (5, 1, 2)
  with pytest.raises(ValueError, match=r"\(10, L, D\) or \(10, D\).*got \(4, 2\)"):
    text_embeddings.load_text_table(path, num_classes=10)
  np.save(path, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match="allow_pickle"):
    text_embeddings.load_text_table(path, num_classes=4)


def test_image_size_must_divide():
  cfg = unet.unet_config("fashion")
  cfg.image_size = 30
  with pytest.raises(ValueError, match=r"\(30, 30\) is not divisible by 4"):
    dm.DiffusionModel.from_config(cfg)


def test_unknown_variant():
  with pytest.raises(ValueError, match="Unknown U-Net variant 'huge'.*fashion"):
    unet.unet_config("huge")


@pytest.mark.parametrize("variant, low, high", [
    ("tiny", 10e3, 50e3), ("tiny_sr", 10e3, 50e3), ("fashion", 1e6, 3e6),
    ("imagenet64", 250e6, 350e6), ("sr256", 250e6, 350e6), ("sr1024", 80e6, 200e6)])
def test_param_counts(variant, low, high):
  cfg = unet.unet_config(variant)
  table = None
  if cfg.context_dim:
    table = np.zeros((cfg.num_classes + 1, 1, cfg.context_dim), np.float32)
  model = dm.DiffusionModel.from_config(cfg, table)
  n = dm.param_count(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
  assert low <= n <= high, f"{variant}: {n} parameters"


def test_noise_augment_levels():
  x = jax.random.uniform(jax.random.PRNGKey(0), (4, 8, 8, 3), minval=-1)
  key = jax.random.PRNGKey(1)
  out = dm.noise_augment(x, jnp.array([0.0, 0.5, 0.5, 1.0]), key)
  np.testing.assert_array_equal(out[0], x[0])                        # level 0: x
  np.testing.assert_allclose(out[3], jax.random.normal(key, x.shape)[3], atol=1e-6)
  assert 0.1 < float(jnp.std(out[1] - x[1])) < 0.95                  # in between


def test_noise_augment_per_item_keys_ignore_the_batch():
  x = jnp.zeros((3, 4, 4, 1))
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  full = dm.noise_augment(x, 0.7, keys)
  np.testing.assert_array_equal(full[1:2], dm.noise_augment(x[1:2], 0.7, keys[1:2]))
