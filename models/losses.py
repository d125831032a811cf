"""The denoising loss (DDPM/Imagen), with label dropout and noise-conditioning
augmentation.

A pure function of (params, batch, key) once the model and the two probabilities are
bound, so a test can call it directly and the trainer can `jax.grad` it.
"""
import jax
import jax.numpy as jnp

from synthfactory.models import schedules


def diffusion_loss(model, params, batch, key, *, label_dropout=0.0, max_aug=0.0):
  """Mean squared error between the model's output and its ε or v target.

  Args:
    model: a `DiffusionModel` (its schedule, prediction type and null label are used).
    params: the model's parameters.
    batch: {"image": (B, H, W, C) float in [-1, 1], "label": (B,) int}, plus
      "low_res": (B, h, w, C) for a super-resolution model.
    key: PRNG key; every random choice of the step derives from it.
    label_dropout: probability of replacing a label by the null label (index
      `num_classes`), which trains the unconditional branch classifier-free
      guidance needs.
    max_aug: super-resolution only: the low-res input is noised at a level drawn
      uniformly from [0, max_aug] and the model is told that level (Imagen's
      noise-conditioning augmentation).
  """
  x0, labels = batch["image"], batch["label"]
  k_t, k_noise, k_drop, k_aug_level, k_aug, k_dropout = jax.random.split(key, 6)
  schedule = model.schedule
  t = jax.random.randint(k_t, labels.shape, 0, schedule.num_steps)
  noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
  x_t = schedule.q_sample(x0, t, noise)
  drop = jax.random.bernoulli(k_drop, label_dropout, labels.shape)
  labels = jnp.where(drop, model.num_classes, labels)
  cond = None
  if "low_res" in batch:
    aug_level = jax.random.uniform(k_aug_level, labels.shape, maxval=max_aug)
    cond = {"low_res": model.noise_augment(batch["low_res"], aug_level, k_aug),
            "aug_level": aug_level}
  out = model.apply(params, x_t, t, labels, cond, train=True,
                    rngs={"dropout": k_dropout})
  target = schedules.training_target(x0, noise, schedule.alpha_bar(t), model.prediction)
  return jnp.mean(jnp.square(out.astype(jnp.float32) - target))
