"""Train state, the data-parallel training step, and the fit loop of a diffusion model.

Data parallelism: a 1-D mesh over the local devices; the batch is split along its
'data' axis and params, EMA and optimizer state are replicated, so XLA inserts the
gradient all-reduce. Determinism: the key of step s is fold_in(PRNGKey(seed), s) and
its batch a pure function of (seed, s) (input_pipeline), so a run resumed from a
checkpoint continues bit for bit as if it had never stopped.
"""
import functools
from typing import Any

from absl import logging
from flax import core as flax_core
from flax import struct
from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import optax

from synthfactory.models import diffusion_model
from synthfactory.models import losses
from synthfactory.models import text_embeddings
from synthfactory.training import checkpoints
from synthfactory.training import input_pipeline
from synthfactory.training import progress as progress_lib

# PRNG stream of parameter init; far above any step index, whose streams it would share.
_INIT_STREAM = 2**31 - 1


class TrainState(struct.PyTreeNode):
  step: jax.Array
  params: Any
  ema_params: Any
  opt_state: Any


def build_model(config):
  """The DiffusionModel of config.model; a text-conditioned U-Net (context_dim) reads
  its per-class prompt embeddings from the .npy file config.text_embeddings."""
  if config.model.context_dim is None:
    return diffusion_model.DiffusionModel.from_config(config.model)
  if not config.text_embeddings:
    raise ValueError(
        f"The U-Net cross-attends to class prompts (context_dim="
        f"{config.model.context_dim}); set config.text_embeddings to a .npy file of "
        f"per-class prompt embeddings shaped (num_classes, L, D) or (num_classes, D), "
        f"or set config.model.context_dim=None.")
  table = text_embeddings.load_text_table(config.text_embeddings,
                                          config.model.num_classes)
  return diffusion_model.DiffusionModel.from_config(config.model, table)


def make_schedule(optim, num_steps):
  """Learning rate by step: linear warm-up, constant, then (if optim.decay_start > 0)
  a cosine decay from decay_start to optim.lr * optim.final_lr_fraction at num_steps.

  The decay is set by absolute step so that a run resumed with it (a constant-rate
  run extended by a cool-down) continues from the rate it had.
  """
  lr = optax.warmup_constant_schedule(0.0, optim.lr, max(optim.warmup_steps, 1))
  if not optim.decay_start:
    return lr
  if not optim.warmup_steps <= optim.decay_start < num_steps:
    raise ValueError(
        f"optim.decay_start={optim.decay_start} must lie between the warm-up's end "
        f"({optim.warmup_steps}) and num_steps ({num_steps}); raise num_steps or set "
        f"decay_start=0 for a constant rate.")
  decay = optax.cosine_decay_schedule(optim.lr, num_steps - optim.decay_start,
                                      alpha=optim.final_lr_fraction)
  return optax.join_schedules([lr, decay], [optim.decay_start])


def make_optimizer(optim, lr):
  """clip_by_global_norm, then adam / adamw / adafactor on the rate schedule `lr`."""
  makers = {
      "adam": lambda: optax.adam(lr, b1=optim.b1, b2=optim.b2),
      "adamw": lambda: optax.adamw(lr, b1=optim.b1, b2=optim.b2,
                                   weight_decay=optim.weight_decay),
      "adafactor": lambda: optax.adafactor(lr),
  }
  if optim.name not in makers:
    raise ValueError(f"Unknown optimizer {optim.name!r}; choose one of "
                     f"{sorted(makers)}.")
  return optax.chain(optax.clip_by_global_norm(optim.clip_norm), makers[optim.name]())


class Trainer:
  """The compiled training step of one model and config, on a mesh of devices.

  Build it once and call `fit` as often as needed: the step compiles on first use.
  """

  def __init__(self, model, config, devices=None):
    self.model, self.config = model, config
    devices = list(devices or jax.local_devices())
    if config.batch_size % len(devices):
      raise ValueError(
          f"batch_size {config.batch_size} does not divide evenly over {len(devices)} "
          f"devices; use a multiple of {len(devices)}.")
    self.mesh = Mesh(np.array(devices), ("data",))
    self._replicated = NamedSharding(self.mesh, P())
    self._batch_sharding = NamedSharding(self.mesh, P("data"))
    self.lr = make_schedule(config.optim, config.num_steps)
    self.tx = make_optimizer(config.optim, self.lr)
    # Init runs once: skipping backend optimisation saves seconds of LLVM time.
    self._init = jax.jit(self._init_state, out_shardings=self._replicated,
                         compiler_options={"xla_backend_optimization_level": 0})
    self._step = jax.jit(
        self._train_step, donate_argnums=0,
        in_shardings=(self._replicated, self._batch_sharding),
        out_shardings=(self._replicated, self._replicated))

  def init_state(self):
    return self._init(jax.random.fold_in(jax.random.PRNGKey(self.config.seed),
                                         _INIT_STREAM))

  def _init_state(self, key):
    params = self.model.init(key)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      ema_params=params, opt_state=self.tx.init(params))

  def step(self, state, batch):
    """One training step on a host batch {"image", "label"}; donates `state`."""
    return self._step(state, jax.device_put(batch, self._batch_sharding))

  def _prepare(self, batch):
    """Resizes images to the model's size; a super-resolution model also gets
    their downsampled copy as its low-res input."""
    images = batch["image"]
    h, w, c = self.model.image_shape
    if images.shape[1:3] != (h, w):
      images = jax.image.resize(images, (len(images), h, w, c), "linear")
    batch = {"image": images, "label": batch["label"]}
    if self.model.low_res_shape is not None:
      low_res_shape = (len(images),) + self.model.low_res_shape
      batch["low_res"] = jax.image.resize(images, low_res_shape, "linear")
    return batch

  def _train_step(self, state, batch):
    cfg = self.config
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), state.step)
    loss_fn = functools.partial(losses.diffusion_loss, self.model,
                                label_dropout=cfg.label_dropout, max_aug=cfg.max_aug)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, self._prepare(batch), key)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # EMA warm-up: early on the average would be mostly the random init.
    decay = jnp.minimum(cfg.ema_decay, (1.0 + state.step) / (10.0 + state.step))
    ema = optax.incremental_update(params, state.ema_params, 1.0 - decay)
    new_state = TrainState(step=state.step + 1, params=params, ema_params=ema,
                           opt_state=opt_state)
    return new_state, {"loss": loss, "grad_norm": optax.global_norm(grads),
                       "lr": self.lr(state.step)}

  def fit(self, source, workdir, *, num_steps=None, init_from=None):
    """Trains on `source` to `num_steps` in `workdir`; returns the final TrainState.

    Resumes from the workdir's latest checkpoint; a workdir without one starts from
    the weights of the checkpoint `init_from` (if given) or from scratch. Both
    default to the config's values; they describe the run, not the compiled step.
    """
    cfg = self.config
    num_steps = cfg.num_steps if num_steps is None else num_steps
    init_from = cfg.init_from if init_from is None else init_from
    self._check_source(source)
    checkpointer = checkpoints.Checkpointer(workdir, cfg.keep_checkpoints)
    state = self._restore_or_init(checkpointer, len(source), init_from)
    start = int(state.step)
    progress = progress_lib.Progress(workdir, total_steps=num_steps,
                                     batch_size=cfg.batch_size,
                                     log_every=cfg.log_every, start_step=start)
    logging.info("training steps %d → %d on %d examples, %d device(s)", start,
                 num_steps, len(source), self.mesh.size)
    batches = input_pipeline.batches(source, cfg.batch_size, cfg.seed, start, num_steps)
    for done, batch in enumerate(batches, start + 1):
      self._check_labels(batch["label"])
      state, metrics = self.step(state, batch)
      progress.update(done, metrics)
      if done % cfg.checkpoint_every == 0 or done == num_steps:
        self._save(checkpointer, state, len(source))
    checkpointer.close()
    return state

  def _meta(self, step, num_examples):
    cfg = self.config
    return {"data_position": input_pipeline.data_position(num_examples,
                                                          cfg.batch_size, step),
            "seed": cfg.seed, "batch_size": cfg.batch_size,
            "num_examples": num_examples}

  def _save(self, checkpointer, state, num_examples):
    step = int(state.step)
    arrays = {"params": state.params, "ema_params": state.ema_params,
              "opt_state": state.opt_state}
    checkpointer.save(step, arrays, self._meta(step, num_examples), self.config.model,
                      text_table=self.model.text_table)

  def _restore_or_init(self, checkpointer, num_examples, init_from):
    if checkpointer.latest_step() is not None:
      template = jax.tree.map(
          lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self._replicated),
          jax.eval_shape(self._init_state, jax.random.PRNGKey(0)))
      arrays, meta = checkpointer.restore(
          {n: getattr(template, n) for n in ("params", "ema_params", "opt_state")})
      expected = self._meta(meta["step"], num_examples)
      if meta != {"step": meta["step"], **expected}:
        raise checkpoints.CheckpointError(
            checkpointer.directory,
            f"The checkpoint's input order {meta} differs from this run's {expected}, "
            f"so the resumed run would not continue the same sequence of batches.",
            "resume with the checkpoint's seed, batch size and dataset, or train in a "
            "new workdir (with init_from=<this checkpoint> to start from its weights).")
      logging.info("resumed from step %d (%s)", meta["step"], meta["data_position"])
      step = jnp.asarray(meta["step"], jnp.int32)
      return jax.device_put(TrainState(step=step, **arrays), self._replicated)
    state = self.init_state()
    if init_from:
      state = self._load_pretrained(state, init_from)
    return state

  def _load_pretrained(self, state, init_from):
    got = checkpoints.read(init_from, ["params", "ema_params", "model_config"])
    old_classes = got["model_config"]["num_classes"]
    merge = functools.partial(merge_pretrained, init_from=init_from,
                              num_classes=(old_classes, self.model.num_classes))
    logging.info("fine-tuning from %s (%d classes → %d)", init_from, old_classes,
                 self.model.num_classes)
    return state.replace(
        params=jax.device_put(merge(state.params, got["params"]), self._replicated),
        ema_params=jax.device_put(merge(state.ema_params, got["ema_params"]),
                                  self._replicated))

  def _check_source(self, source):
    channels = source.read(np.arange(1))["image"].shape[-1]
    if channels != self.model.image_shape[-1]:
      raise input_pipeline.InputError(
          f"The data has {channels} channel(s) but the model expects "
          f"{self.model.image_shape[-1]}; set config.model.channels={channels}.")

  def _check_labels(self, labels):
    bad = labels[(labels < 0) | (labels >= self.model.num_classes)]
    if bad.size:
      raise input_pipeline.InputError(
          f"Label {bad[0]} is outside [0, {self.model.num_classes}); set "
          f"config.model.num_classes to the dataset's number of classes.")


def merge_pretrained(fresh, pretrained, *, init_from, num_classes):
  """`fresh` params with every leaf replaced by the pretrained one of equal shape.

  A leaf whose leading axis goes from old_classes + 1 to new_classes + 1 (the class-
  embedding table, null label included) keeps its fresh initialisation.
  """
  old_classes, new_classes = num_classes
  fresh_flat = traverse_util.flatten_dict(flax_core.unfreeze(fresh), sep="/")
  old_flat = traverse_util.flatten_dict(flax_core.unfreeze(pretrained), sep="/")
  if fresh_flat.keys() != old_flat.keys():
    raise checkpoints.CheckpointError(
        init_from, f"The checkpoint's parameters do not match this model's: only in "
        f"the checkpoint {sorted(old_flat.keys() - fresh_flat.keys())[:5]}, only in "
        f"the model {sorted(fresh_flat.keys() - old_flat.keys())[:5]}.",
        "fine-tune with the same U-Net architecture as the checkpoint "
        "(checkpoints.load_model_config shows it).")
  merged = {}
  for name, new in fresh_flat.items():
    old = old_flat[name]
    if old.shape == new.shape:
      merged[name] = old
    elif (old_classes != new_classes and old.shape[1:] == new.shape[1:]
          and (old.shape[0], new.shape[0]) == (old_classes + 1, new_classes + 1)):
      logging.info("class-embedding table %s initialised afresh: %s → %s", name,
                   old.shape, new.shape)
      merged[name] = new
    else:
      raise checkpoints.CheckpointError(
          init_from, f"Parameter {name} has shape {old.shape} in the checkpoint but "
          f"{new.shape} in this model.",
          "fine-tune with the checkpoint's architecture; only num_classes may differ.")
  return traverse_util.unflatten_dict(merged, sep="/")
