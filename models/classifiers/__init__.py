"""Image classifiers by name: ResNet, ResNet-RS, ViT/DeiT and small 28 px models.

  model = classifiers.build(classifiers.model_config("resnet50", num_classes=1000))
  variables = model.init({"params": key}, images)          # params (+ batch_stats)
  logits = model.apply(variables, images, train=False)

Every model maps NHWC images (any float range; the trainer feeds [-1, 1]) to float32
logits, takes `train` (batch statistics, dropout, stochastic depth; training needs a
"dropout" rng and mutable "batch_stats" for the models that have batch norm), and
accepts any image size its strides allow, so one named model serves several input
sizes (ResNet-RS at 160/190/224 px, DeiT-B at 224/384 px). Names ending in `_tiny` are
small stand-ins of each family for tests.

Every model sows its penultimate features (the head's input, before dropout) as
intermediates/features; `apply_with_features` returns them with the logits (a domain
feature network for Fréchet distances, evaluation/fmnist_features.py). The sow costs
nothing elsewhere: it is dropped unless "intermediates" is mutable.
"""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from synthfactory.models.classifiers import resnet
from synthfactory.models.classifiers import small
from synthfactory.models.classifiers import vit

_CREATE = {name: family.create for family in (resnet, vit, small)
           for name in family.NAMES}
NAMES = tuple(sorted(_CREATE))
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def model_config(name, num_classes, **overrides):
  """A fresh model config: name, num_classes, dropout (before the head),
  stochastic_depth (ResNet-RS, ViT/DeiT) and dtype (of the computation; params stay
  float32)."""
  config = ml_collections.ConfigDict(dict(
      name=name, num_classes=num_classes, dropout=0.0, stochastic_depth=0.0,
      dtype="float32"))
  config.update(overrides)
  return config


def build(config):
  """The Flax module a model config names."""
  if config.name not in _CREATE:
    raise ValueError(f"Unknown classifier {config.name!r}; choose one of {NAMES}.")
  if config.dtype not in _DTYPES:
    raise ValueError(f"Unknown model dtype {config.dtype!r}; choose one of "
                     f"{sorted(_DTYPES)}.")
  if config.num_classes < 2:
    raise ValueError(f"model.num_classes is {config.num_classes}; a classifier needs "
                     f"at least 2 classes.")
  return _CREATE[config.name](config.name, num_classes=config.num_classes,
                              dropout=config.dropout,
                              stochastic_depth=config.stochastic_depth,
                              dtype=_DTYPES[config.dtype])


def variable_shapes(model, image_shape):
  """The shapes of the model's variables for (H, W, C) images, without computing."""
  return jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape))))


def count_params(model, image_shape):
  """The number of trainable parameters (batch-norm statistics excluded)."""
  params = variable_shapes(model, image_shape)["params"]
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def apply_with_features(model, variables, images):
  """(logits, features) of a classifier at evaluation (train=False): float32 (B, K)
  and its penultimate features, float32 (B, D)."""
  logits, state = model.apply(variables, images, train=False, mutable=["intermediates"])
  (features,) = state["intermediates"]["features"]
  return logits, features.astype(jnp.float32)
