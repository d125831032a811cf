"""Classifier architectures: published parameter counts, structure, forward passes,
learning, and errors. Real sizes are only traced (jax.eval_shape); tiny variants run."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from synthfactory.models import classifiers

# name, input size, published parameters (millions): He et al. 2016 (torchvision),
# Bello et al. 2021 Table 7, Dosovitskiy et al. / Touvron et al.
PUBLISHED = [
    ("resnet18", 224, 11.7), ("resnet50", 224, 25.6), ("resnet101", 224, 44.5),
    ("resnet152", 224, 60.2), ("resnet_rs50", 160, 35.7), ("resnet_rs101", 160, 63.7),
    ("resnet_rs152", 224, 86.8), ("vit_s16", 224, 22.0), ("deit_s", 224, 22.0),
    ("deit_b", 224, 86.0), ("deit_l", 224, 304.0),
]
TINY = ["resnet_tiny", "resnet_rs_tiny", "vit_tiny", "small_cnn_tiny",
        "small_resnet_tiny"]


def _build(name, num_classes=1000, **overrides):
  return classifiers.build(classifiers.model_config(name, num_classes, **overrides))


def _input_shape(name):
  return (28, 28, 1) if name.startswith("small") else (32, 32, 3)


def _flat(tree):
  return flax.traverse_util.flatten_dict(tree, sep="/")


@pytest.mark.parametrize("name, size, millions", PUBLISHED)
def test_parameter_counts_match_the_papers(name, size, millions):
  got = classifiers.count_params(_build(name), (size, size, 3)) / 1e6
  assert abs(got - millions) / millions < 0.02, (name, got)


def test_every_named_model_maps_images_to_logits():
  for name in classifiers.NAMES:
    shape = _input_shape(name) if name.endswith("_tiny") or name.startswith(
        "small") else (224, 224, 3)
    model = _build(name, num_classes=7)
    out = jax.eval_shape(lambda m=model, s=shape: m.init_with_output(
        jax.random.PRNGKey(0), jnp.zeros((2, *s)))[0])
    assert out.shape == (2, 7) and out.dtype == jnp.float32, name
  assert all(f"{family}_tiny" in classifiers.NAMES
             for family in ("resnet", "resnet_rs", "vit", "small_cnn", "small_resnet"))


def test_resnet_rs_has_the_published_structure():
  params = _flat(classifiers.variable_shapes(_build("resnet_rs50"), (160, 160, 3))[
      "params"])
  stem = sorted({k.split("/")[0] for k in params if k.startswith("stem_conv")})
  assert stem == ["stem_conv0", "stem_conv1", "stem_conv2", "stem_conv3"]
  assert [params[f"{s}/kernel"].shape[-1] for s in stem] == [32, 32, 64, 64]
  # Squeeze-excitation in all 16 blocks, reducing to a quarter of the block's output.
  se = [k for k in params if "SqueezeExcite_0/reduce/kernel" in k]
  assert len(se) == 16
  assert params["Block_0/SqueezeExcite_0/reduce/kernel"].shape == (1, 1, 256, 64)
  plain = _flat(classifiers.variable_shapes(_build("resnet50"), (224, 224, 3))[
      "params"])
  assert params["head/kernel"].shape == plain["head/kernel"].shape == (2048, 1000)
  assert plain["stem_conv/kernel"].shape == (7, 7, 3, 64)
  assert not any("SqueezeExcite" in k for k in plain)


def test_vit_heads_follow_their_papers():
  vit = _flat(classifiers.variable_shapes(_build("vit_s16"), (224, 224, 3))["params"])
  deit = _flat(classifiers.variable_shapes(_build("deit_s"), (224, 224, 3))["params"])
  assert "pre_logits/kernel" in vit and "cls" not in vit and "pos_embedding" not in vit
  assert deit["cls"].shape == (1, 1, 384)
  assert deit["pos_embedding"].shape == (1, 196, 384)  # 14x14 patches of 16 px.
  big = _flat(classifiers.variable_shapes(_build("deit_b"), (384, 384, 3))["params"])
  assert big["pos_embedding"].shape == (1, 576, 768)


@functools.cache
def _tiny_variables(name):
  """Initialised variables of a tiny model (5 classes), shared: on a busy 2-core CPU
  each init compiles for seconds. Dropout, stochastic depth and dtype leave the
  variables' shapes as they are, so all of its configurations share them."""
  model = _build(name, num_classes=5)
  return jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, *_input_shape(name))))


@pytest.mark.parametrize("name", TINY)
def test_tiny_variants_train(name):
  """Forward passes in both modes; one Adam step lowers the loss on a fixed batch."""
  model = _build(name, num_classes=5, dropout=0.1)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.uniform(-1, 1, (16, *_input_shape(name))), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 5, 16))
  variables = _tiny_variables(name)
  tx = optax.adam(1e-2)

  def loss_fn(params, variables):
    logits, updated = model.apply({**variables, "params": params}, images, train=True,
                                  rngs={"dropout": jax.random.PRNGKey(1)},
                                  mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, updated

  @jax.jit
  def step(variables, opt_state):
    (loss, updated), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        variables["params"], variables)
    updates, opt_state = tx.update(grads, opt_state)
    eval_logits = model.apply(variables, images)
    return ({**variables, **updated,
             "params": optax.apply_updates(variables["params"], updates)}, opt_state,
            loss, eval_logits)

  opt_state = tx.init(variables["params"])
  variables, opt_state, before, logits = step(variables, opt_state)
  _, _, after, _ = step(variables, opt_state)
  assert np.isfinite(before) and after < before, (before, after)
  assert logits.shape == (16, 5) and np.isfinite(logits).all()


def test_resnet_d_shortcut_average_pools_before_its_projection():
  model = _build("resnet_rs_tiny", num_classes=5)
  images = jax.random.normal(jax.random.PRNGKey(1), (1, 32, 32, 3))
  variables = _tiny_variables("resnet_rs_tiny")
  _, state = jax.jit(lambda v, x: model.apply(
      v, x, capture_intermediates=True, mutable=["intermediates"]))(variables, images)
  got = state["intermediates"]
  block_in = got["Block_0"]["__call__"][0]  # (1, 8, 8, 32): stem and stage 1.
  pooled = block_in.reshape(1, 4, 2, 4, 2, 32).mean(axis=(2, 4))
  kernel = variables["params"]["Block_1"]["proj"]["kernel"]  # (1, 1, 32, 64)
  np.testing.assert_allclose(got["Block_1"]["proj"]["__call__"][0],
                             pooled @ kernel[0, 0], rtol=1e-4, atol=1e-5)


def test_stochastic_depth_drops_residual_branches_only_in_training():
  images = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3))
  for name in ("resnet_rs_tiny", "vit_tiny"):
    model = _build(name, num_classes=5, stochastic_depth=0.9)
    # Perturbed: zero-initialised branch ends would make dropping them invisible.
    variables = jax.tree.map(lambda v: v + 0.1, _tiny_variables(name))
    run = jax.jit(lambda key, train, m=model, v=variables: m.apply(
        v, images, train=train, rngs={"dropout": key}, mutable=["batch_stats"])[0],
                  static_argnums=1)
    keys = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    assert not np.allclose(run(keys[0], True), run(keys[1], True)), name
    np.testing.assert_array_equal(run(keys[0], False), run(keys[1], False))


def test_bfloat16_computation_keeps_float32_params_and_logits():
  model = _build("small_cnn_tiny", num_classes=5, dtype="bfloat16")
  variables = _tiny_variables("small_cnn_tiny")
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  logits = jax.jit(model.apply)(variables, jnp.ones((2, 28, 28, 1)))
  assert logits.dtype == jnp.float32


def test_bad_model_configs_are_clear_errors():
  with pytest.raises(ValueError, match="Unknown classifier 'resnet51'.*resnet50"):
    _build("resnet51")
  with pytest.raises(ValueError, match="Unknown model dtype"):
    _build("resnet50", dtype="float16")
  with pytest.raises(ValueError, match="at least 2 classes"):
    _build("resnet50", num_classes=1)
  with pytest.raises(ValueError, match="no stochastic depth.*stochastic_depth=0"):
    _build("resnet50", stochastic_depth=0.1)
  model = _build("vit_tiny", num_classes=3)
  with pytest.raises(ValueError, match="not a multiple of the patch size 4"):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 30, 30, 3)))
