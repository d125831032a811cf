"""A cascade of diffusion models: a base model, then super-resolution stages (64 → 256 → 1024).

Randomness stays per item (DESIGN §3): stage k samples item b with key
`fold_in(item_keys[b], k)`, and its noise-conditioning augmentation draws from that
stage key's last fold_in slot, which a sampler's step counter never reaches.
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from synthfactory.models import diffusion_model
from synthfactory.models import samplers

_AUG_SLOT = 2 ** 32 - 1


@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
  """One model of the cascade, how to sample it, and (SR) its input's noise level."""
  model: diffusion_model.DiffusionModel
  params: Any
  sampler: samplers.SamplerConfig
  aug_level: float = 0.0


class Cascade:
  """Chains stages; `sample(item_keys, labels)` returns the last stage's images."""

  def __init__(self, stages):
    stages = [s if isinstance(s, Stage) else Stage(*s) for s in stages]
    _check_chain(stages)
    self.stages = stages
    self._runs = [_compile_stage(k, s) for k, s in enumerate(stages)]

  @property
  def output_shape(self):
    return tuple(self.stages[-1].model.image_shape)

  def sample(self, item_keys, labels, *, all_stages=False):
    """(B,) per-item keys and labels → (B, H, W, C) images of the last stage.

    all_stages=True returns the list of every stage's output instead (e.g. to keep
    the 64 px and 256 px images too).
    """
    outputs = [self.run_stage(0, item_keys, labels)]
    for k in range(1, len(self.stages)):
      outputs.append(self.run_stage(k, item_keys, labels, outputs[-1]))
    return outputs if all_stages else outputs[-1]

  def run_stage(self, k, item_keys, labels, low_res=None):
    """Stage k alone; an SR stage upsamples `low_res` (clipped to [-1, 1] first)."""
    labels = jnp.asarray(labels, jnp.int32)
    if item_keys.shape[0] != labels.shape[0]:
      raise ValueError(f"Got {item_keys.shape[0]} item keys for {labels.shape[0]} "
                       "labels; pass one key per item.")
    if (k > 0) != (low_res is not None):
      raise ValueError(f"Stage {k} {'needs' if k else 'takes no'} low_res input.")
    return self._runs[k](self.stages[k].params, item_keys, labels, low_res)


def _compile_stage(k, stage):
  """One jitted program per stage: key derivation, SR conditioning and sampling."""
  model = stage.model
  sample = samplers.make_sampler(model.apply, model.schedule, stage.sampler,
                                 tuple(model.image_shape), prediction=model.prediction,
                                 num_classes=model.num_classes)

  @jax.jit
  def run(params, item_keys, labels, low_res):
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(item_keys, k)
    cond = None if low_res is None else _sr_cond(low_res, stage.aug_level, keys)
    return sample(params, keys, labels, cond)

  return run


def _sr_cond(prev, aug_level, stage_keys):
  low_res = jnp.clip(prev, -1.0, 1.0)
  level = jnp.full(low_res.shape[:1], aug_level, jnp.float32)
  if aug_level > 0:
    aug_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(stage_keys, _AUG_SLOT)
    low_res = diffusion_model.noise_augment(low_res, level, aug_keys)
  return {"low_res": low_res, "aug_level": level}


def _check_chain(stages):
  if not stages:
    raise ValueError("A cascade needs at least one stage.")
  for k, stage in enumerate(stages):
    model = stage.model
    if not isinstance(stage.sampler, samplers.SamplerConfig):
      raise ValueError(f"Stage {k}: sampler must be a SamplerConfig, got "
                       f"{type(stage.sampler).__name__}; use SamplerConfig.from_dict.")
    if not 0 <= stage.aug_level <= 1:
      raise ValueError(f"Stage {k}: aug_level must be in [0, 1], got "
                       f"{stage.aug_level}.")
    if model.num_classes != stages[0].model.num_classes:
      raise ValueError(f"Stage {k} has {model.num_classes} classes, stage 0 has "
                       f"{stages[0].model.num_classes}; every stage needs the same "
                       "label set.")
    if k == 0:
      if model.low_res_shape is not None:
        raise ValueError("Stage 0 is a super-resolution model; a cascade starts with "
                         "a base model.")
      continue
    prev = tuple(stages[k - 1].model.image_shape)
    if model.low_res_shape is None:
      raise ValueError(f"Stage {k} is a base model; every stage after the first must "
                       "be a super-resolution model.")
    if tuple(model.low_res_shape) != prev:
      raise ValueError(f"Stage {k} upsamples {tuple(model.low_res_shape)} images but "
                       f"stage {k - 1} makes {prev}; reorder the stages or use an SR "
                       f"model whose low_res_size is {prev[0]}.")
