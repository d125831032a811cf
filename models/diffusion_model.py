"""A diffusion model as the samplers and trainers see it: network + schedule + metadata.

`DiffusionModel.apply(params, x_t, t, labels, cond)` is the pure function the samplers
wrap (DESIGN §3); the class-prompt context is looked up from the text table by label
inside it, so the null label gets the null (all-zero) prompt with no extra plumbing.
"""
import dataclasses
import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from synthfactory.models import schedules
from synthfactory.models import unet

_COND_KEYS = ("low_res", "aug_level")


def _cosine_alpha_bar(s, offset=0.008):
  """Imagen's continuous cosine ᾱ(s), s ∈ [0, 1], normalised so that ᾱ(0) = 1."""
  f = lambda u: jnp.cos(0.5 * math.pi * (u + offset) / (1 + offset)) ** 2
  return jnp.clip(f(s) / f(0.0), 0.0, 1.0)


def _normal_like(key, x):
  """Noise for x from one key, or per item from a (B,) batch of keys."""
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  if key.ndim == (1 if typed else 2):
    return jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(key)
  return jax.random.normal(key, x.shape, x.dtype)


@jax.jit
def noise_augment(low_res, aug_level, key):
  """Noise-conditioning augmentation: diffuses low_res to continuous level aug_level.

  z = √ᾱ(s)·x + √(1 − ᾱ(s))·ε with Imagen's cosine ᾱ; s = 0 returns x unchanged and
  s = 1 is pure noise. aug_level is a scalar or per item (B,); key is one key, or
  (B,) per-item keys when the result must not depend on the batch (sampling).
  """
  low_res = jnp.asarray(low_res)
  level = jnp.broadcast_to(jnp.asarray(aug_level, jnp.float32), low_res.shape[:1])
  ab = _cosine_alpha_bar(level).reshape((-1,) + (1,) * (low_res.ndim - 1))
  noise = _normal_like(key, low_res)
  return jnp.sqrt(ab) * low_res + jnp.sqrt(1.0 - ab) * noise


@dataclasses.dataclass(frozen=True, eq=False)
class DiffusionModel:
  """A U-Net with its noise schedule, prediction type and shapes.

  text_table: (num_classes + 1, L, context_dim) float32 (see text_embeddings), required
  exactly when the U-Net has a context_dim. It is closed over by `apply`, so it becomes
  a constant of every compiled sampler: keep L·D modest (a few tokens per class).
  low_res_shape: (h, w, C) of the conditioning image of a super-resolution model.
  """
  module: unet.UNet
  schedule: schedules.NoiseSchedule
  prediction: str
  image_shape: tuple
  num_classes: int
  text_table: Optional[np.ndarray] = None
  low_res_shape: Optional[tuple] = None

  def __post_init__(self):
    schedules.check_prediction(self.prediction)
    factor = 2 ** (len(self.module.channel_mult) - 1)
    if self.image_shape[0] % factor or self.image_shape[1] % factor:
      raise ValueError(unet.image_size_error(self.image_shape[:2], factor))
    if self.module.num_classes != self.num_classes:
      raise ValueError(f"U-Net has {self.module.num_classes} classes, the model "
                       f"{self.num_classes}; build both from one config.")
    if self.module.super_resolution != (self.low_res_shape is not None):
      raise ValueError("low_res_shape must be given exactly for a super-resolution "
                       f"U-Net (super_resolution={self.module.super_resolution}, "
                       f"low_res_shape={self.low_res_shape}).")
    self._check_text_table()

  def _check_text_table(self):
    dim = self.module.context_dim
    if dim is None and self.text_table is None:
      return
    if dim is None:
      raise ValueError("A text table was given but the U-Net has no cross-attention; "
                       "set context_dim in the config or drop the table.")
    if self.text_table is None:
      raise ValueError(f"The U-Net cross-attends to text (context_dim={dim}): pass "
                       "text_table=load_text_table(path, num_classes), or set "
                       "context_dim=None.")
    shape = np.shape(self.text_table)
    if len(shape) != 3 or shape[0] != self.num_classes + 1 or shape[2] != dim:
      raise ValueError(f"Text table must be shaped ({self.num_classes + 1}, L, {dim}) "
                       f"(classes + null row, tokens, context_dim), got {shape}; build "
                       "it with text_embeddings.load_text_table.")

  @classmethod
  def from_config(cls, cfg, text_table=None):
    """From a `unet.unet_config(...)`-style ConfigDict."""
    low_res = None
    if cfg.super_resolution:
      low_res = (cfg.low_res_size, cfg.low_res_size, cfg.channels)
    if text_table is not None:
      text_table = np.asarray(text_table, np.float32)
    return cls(module=unet.build_unet(cfg),
               schedule=schedules.NoiseSchedule.create(cfg.schedule),
               prediction=cfg.prediction,
               image_shape=(cfg.image_size, cfg.image_size, cfg.channels),
               num_classes=cfg.num_classes, text_table=text_table,
               low_res_shape=low_res)

  def _dummy_cond(self):
    if self.low_res_shape is None:
      return None
    return {"low_res": jnp.zeros((1,) + self.low_res_shape), "aug_level": jnp.zeros(1)}

  def _init(self, rng):
    x = jnp.zeros((1,) + tuple(self.image_shape))
    t = jnp.zeros((1,), jnp.int32)
    kwargs = self._module_kwargs(t, self._dummy_cond())
    return self.module.init(rng, x, t, t, **kwargs)["params"]

  @functools.cached_property
  def _jitted_init(self):
    # Eager init would dispatch (and compile) hundreds of tiny ops. Init runs once,
    # so skip backend optimisation: LLVM spends seconds on ~100 inlined RNGs.
    return jax.jit(self._init,
                   compiler_options={"xla_backend_optimization_level": 0})

  def init(self, rng):
    """Fresh parameters (the `params` collection only); jax.eval_shape-able."""
    if isinstance(rng, jax.core.Tracer):  # Inside eval_shape/jit: theirs compiles.
      return self._init(rng)
    return self._jitted_init(rng)

  def _module_kwargs(self, labels, cond):
    cond = dict(cond or {})
    unknown = set(cond) - set(_COND_KEYS)
    if unknown:
      raise ValueError(f"Unknown cond keys {sorted(unknown)}; a model takes "
                       f"{_COND_KEYS} (super-resolution) or cond=None.")
    kwargs = {k: cond.get(k) for k in _COND_KEYS}
    low_res = kwargs["low_res"]
    if (low_res is not None and self.low_res_shape is not None
        and tuple(low_res.shape[1:]) != tuple(self.low_res_shape)):
      raise ValueError(f"low_res items are {tuple(low_res.shape[1:])}, this model "
                       f"upsamples {tuple(self.low_res_shape)} images.")
    if self.text_table is not None:
      kwargs["context"] = jnp.asarray(self.text_table)[labels]
    return kwargs

  def apply(self, params, x_t, t, labels, cond=None, *, train=False, rngs=None):
    """The network's ε or v prediction for (x_t, t, labels[, cond]), shaped like x_t.

    cond: None, or {"low_res": (B, h, w, C), "aug_level": (B,)} for super-resolution.
    """
    return self.module.apply({"params": params}, x_t, t, labels, train=train,
                             rngs=rngs, **self._module_kwargs(labels, cond))

  noise_augment = staticmethod(noise_augment)


def param_count(params):
  """Number of scalars in a params pytree (works on jax.eval_shape output too)."""
  return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
