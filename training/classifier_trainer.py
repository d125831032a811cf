"""Train state, the data-parallel training step, evaluation and the fit loop of a
classifier.

Data parallelism: a 1-D mesh over the local devices; the batch is split along its
'data' axis and the variables and optimizer state are replicated, so XLA inserts the
gradient all-reduce and batch-norm statistics are those of the global batch.
Determinism: the key of step s is fold_in(PRNGKey(seed), s) and its batch a pure
function of (seed, s) (classifier_data), so a run resumed from a checkpoint continues
bit for bit as if it had never stopped.

Checkpoints (training/checkpoints.py) hold the model variables (params and batch-norm
statistics) as `params`, their moving average as `ema_params` (ema_decay=0 keeps them
equal to the variables) and the optimizer state; evaluation uses the moving average.
A run with config.init_from starts from another run's trained variables (pretraining on
other data), its optimizer and schedule from scratch.
"""
import json
import math
import pathlib
from typing import Any

from absl import logging
from flax import struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import optax

from synthfactory.models import classifiers
from synthfactory.training import checkpoints
from synthfactory.training import classifier_augment
from synthfactory.training import classifier_data
from synthfactory.training import progress as progress_lib

# PRNG stream of parameter init; far above any step index, whose streams it would share.
_INIT_STREAM = 2**31 - 1
EVAL_FILE = "eval.json"


class TrainState(struct.PyTreeNode):
  step: jax.Array
  variables: Any  # {"params": ..., "batch_stats": ...} (no batch_stats without BN)
  ema_variables: Any
  opt_state: Any


def make_schedule(optim, steps_per_epoch, num_steps):
  """Learning rate by step: linear warm-up from 0 over warmup_epochs, then `step`
  (× decay_factor at each of decay_epochs) or `cosine` (to 0 at the last step)."""
  warmup = round(optim.warmup_epochs * steps_per_epoch)
  boundaries = [round(e * steps_per_epoch) for e in optim.decay_epochs]
  if optim.schedule not in ("step", "cosine"):
    raise ValueError(f"Unknown optim.schedule {optim.schedule!r}; choose 'step' or "
                     f"'cosine'.")

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    if optim.schedule == "step":
      lr = optim.lr * optim.decay_factor ** sum((step >= b).astype(jnp.float32)
                                                for b in boundaries)
    else:
      done = jnp.clip((step - warmup) / max(num_steps - warmup, 1), 0.0, 1.0)
      lr = optim.lr * 0.5 * (1.0 + jnp.cos(jnp.pi * done))
    return jnp.where(step < warmup, optim.lr * step / max(warmup, 1), lr)
  return schedule


def _kernels(params):
  """Weight decay applies to conv and dense kernels only (not to biases, norm scales,
  position embeddings or class tokens), as in big_vision and timm."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], "key", None) == "kernel", params)


def make_optimizer(optim, schedule):
  """SGD with momentum (L2 weight decay in the gradient, Goyal et al.) or AdamW
  (decoupled decay, scaled by the learning rate as in optax); optional clipping."""
  if optim.name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(optim.weight_decay, _kernels),
                     optax.sgd(schedule, optim.momentum, nesterov=optim.nesterov))
  elif optim.name == "adamw":
    tx = optax.adamw(schedule, b1=optim.b1, b2=optim.b2,
                     weight_decay=optim.weight_decay, mask=_kernels)
  else:
    raise ValueError(f"Unknown optimizer {optim.name!r}; choose 'sgd' or 'adamw'.")
  if optim.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optim.clip_norm), tx)
  return tx


class Trainer:
  """The compiled training and evaluation steps of one model, config and training
  data, on a mesh of devices. Build it once; the steps compile on first use."""

  def __init__(self, model, config, data, devices=None):
    self.model, self.config, self.data = model, config, data
    if config.model.num_classes != data.num_classes:
      raise classifier_data.DataError(
          f"model.num_classes={config.model.num_classes} but the training data has "
          f"{data.num_classes} classes; set model.num_classes={data.num_classes}.")
    devices = list(devices or jax.local_devices())
    for name in ("batch_size", "eval_batch_size"):
      if config[name] % len(devices):
        raise ValueError(f"{name} {config[name]} does not divide evenly over "
                         f"{len(devices)} devices; use a multiple of {len(devices)}.")
    self.mesh = Mesh(np.array(devices), ("data",))
    self._replicated = NamedSharding(self.mesh, P())
    self._batch_sharding = NamedSharding(self.mesh, P("data"))
    self.steps_per_epoch = data.epoch_size / config.batch_size
    self.num_steps = config.num_steps or math.ceil(config.epochs * self.steps_per_epoch)
    self.schedule = make_schedule(config.optim, self.steps_per_epoch, self.num_steps)
    self.tx = make_optimizer(config.optim, self.schedule)
    self.image_shape = (data.crop.size, data.crop.size, data.channels)
    self._init = jax.jit(self._init_state, out_shardings=self._replicated)
    self._step = jax.jit(self._train_step, donate_argnums=0,
                         in_shardings=(self._replicated, self._batch_sharding),
                         out_shardings=(self._replicated, self._replicated))
    self._eval = jax.jit(self._eval_step,
                         in_shardings=(self._replicated, self._batch_sharding),
                         out_shardings=self._batch_sharding)
    self._probs = jax.jit(self._probabilities_step,
                          in_shardings=(self._replicated, self._batch_sharding),
                          out_shardings=self._batch_sharding)

  # --- state and steps ----------------------------------------------------------------

  def init_state(self):
    return self._init(jax.random.fold_in(jax.random.PRNGKey(self.config.seed),
                                         _INIT_STREAM))

  def _init_state(self, key):
    variables = dict(self.model.init({"params": key}, jnp.zeros((1, *self.image_shape)),
                                     train=False))
    return TrainState(step=jnp.zeros((), jnp.int32), variables=variables,
                      ema_variables=variables,
                      opt_state=self.tx.init(variables["params"]))

  def step(self, state, batch):
    """One training step on a host batch {"image", "label", ...}; donates `state`."""
    batch = {k: batch[k] for k in ("image", "label", "teacher") if k in batch}
    return self._step(state, jax.device_put(batch, self._batch_sharding))

  def _train_step(self, state, batch):
    cfg = self.config
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), state.step)
    k_aug, k_drop = jax.random.split(key)
    images, targets = classifier_augment.augment(
        batch["image"], batch["label"], k_aug, cfg.augment, self.data.num_classes,
        batch.get("teacher"), cfg.data.get("teacher_weight", 0.0))

    def loss_fn(params):
      logits, updated = self.model.apply(
          {**state.variables, "params": params}, images, train=True,
          rngs={"dropout": k_drop}, mutable=["batch_stats"])
      return optax.softmax_cross_entropy(logits, targets).mean(), (logits, updated)

    params = state.variables["params"]
    (loss, (logits, updated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = self.tx.update(grads, state.opt_state, params)
    variables = {**state.variables, **updated,
                 "params": optax.apply_updates(params, updates)}
    # EMA warm-up: early on the average would be mostly the random init.
    decay = jnp.minimum(cfg.ema_decay, (1.0 + state.step) / (10.0 + state.step))
    ema = optax.incremental_update(variables, state.ema_variables, 1.0 - decay)
    metrics = {"loss": loss,
               "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
               "lr": self.schedule(state.step)}
    return TrainState(step=state.step + 1, variables=variables, ema_variables=ema,
                      opt_state=opt_state), metrics

  def _eval_step(self, variables, batch):
    logits = self.model.apply(variables, classifier_augment.normalize(batch["image"]),
                              train=False)
    k = min(5, logits.shape[-1])
    top = jax.lax.top_k(logits, k)[1]
    label = batch["label"]
    return {"top1": top[:, 0] == label, "top5": jnp.any(top == label[:, None], axis=1),
            "loss": optax.softmax_cross_entropy_with_integer_labels(logits, label)}

  def _probabilities_step(self, variables, images):
    return jax.nn.softmax(self.model.apply(
        variables, classifier_augment.normalize(images), train=False))

  # --- evaluation ---------------------------------------------------------------------

  def probabilities(self, variables, source, crop):
    """(softmax class probabilities (N, num_classes), labels (N,)) of every example
    of a split, in order: what the classifier believes each image shows."""
    out, labels = [], []
    batches = classifier_data.eval_batches(source, self.config.eval_batch_size, crop)
    for batch in batches:
      got = jax.device_get(self._probs(
          variables, jax.device_put(batch["image"], self._batch_sharding)))
      out.append(got[batch["mask"]])
      labels.append(batch["label"][batch["mask"]])
    return np.concatenate(out), np.concatenate(labels)

  def evaluate(self, variables, source, crop):
    """Top-1, top-5 and per-class accuracy (and mean loss) on a whole split."""
    labels, top1, top5, loss = [], [], [], []
    batches = classifier_data.eval_batches(source, self.config.eval_batch_size, crop)
    for batch in batches:
      got = jax.device_get(self._eval(
          variables, jax.device_put({"image": batch["image"], "label": batch["label"]},
                                    self._batch_sharding)))
      keep = batch["mask"]
      labels.append(batch["label"][keep])
      top1.append(got["top1"][keep])
      top5.append(got["top5"][keep])
      loss.append(got["loss"][keep])
    labels, top1 = np.concatenate(labels), np.concatenate(top1)
    counts = np.bincount(labels, minlength=source.num_classes)
    hits = np.bincount(labels, weights=top1, minlength=source.num_classes)
    names = source.class_names or [str(i) for i in range(source.num_classes)]
    return {"split": source.spec, "num_examples": int(len(labels)),
            "top1": float(top1.mean()), "top5": float(np.concatenate(top5).mean()),
            "loss": float(np.concatenate(loss).mean()),
            "per_class": {name: (float(h / n) if n else None)
                          for name, h, n in zip(names, hits, counts)},
            "per_class_count": {name: int(n) for name, n in zip(names, counts)}}

  # --- the run ------------------------------------------------------------------------

  def fit(self, workdir, eval_source=None, eval_crop=None, num_steps=None):
    """Trains to `num_steps` (default: config.num_steps, else config.epochs) in
    `workdir`, resuming from its latest checkpoint; then, given an eval source,
    evaluates the EMA variables on it (its images cropped by `eval_crop`, default the
    whole image at the training size) and writes workdir/eval.json. Returns the final
    TrainState."""
    cfg = self.config
    num_steps = self.num_steps if num_steps is None else num_steps
    eval_crop = eval_crop or classifier_data.Crop("none", self.data.crop.size)
    if eval_source is not None:
      classifier_data.check_compatible([*self.data.sources.values(), eval_source])
      eval_source.read(np.arange(1), eval_crop, None)  # Fails now, not after training.
    checkpointer = checkpoints.Checkpointer(workdir, cfg.keep_checkpoints)
    state = self._restore_or_init(checkpointer)
    start = int(state.step)
    progress = progress_lib.Progress(workdir, total_steps=num_steps,
                                     batch_size=cfg.batch_size,
                                     log_every=cfg.log_every, start_step=start)
    logging.info("training steps %d → %d (%.2f epochs of %d examples), %d device(s)",
                 start, num_steps, num_steps / self.steps_per_epoch,
                 self.data.epoch_size, self.mesh.size)
    for done, batch in enumerate(self.data.batches(start, num_steps), start + 1):
      state, metrics = self.step(state, batch)
      progress.update(done, metrics)
      if done % cfg.checkpoint_every == 0 or done == num_steps:
        self._save(checkpointer, state)
      if (eval_source is not None and cfg.eval_every and done % cfg.eval_every == 0
          and done != num_steps):
        self._evaluate_and_write(workdir, state, eval_source, eval_crop)
    checkpointer.close()
    if eval_source is not None:
      self._evaluate_and_write(workdir, state, eval_source, eval_crop)
    return state

  def _evaluate_and_write(self, workdir, state, source, crop):
    results = {"step": int(state.step), **self.evaluate(state.ema_variables, source,
                                                       crop)}
    (pathlib.Path(workdir) / EVAL_FILE).write_text(json.dumps(results, indent=1) + "\n")
    logging.info("eval at step %d on %s (%d examples): top-1 %.4f  top-5 %.4f",
                 results["step"], source.spec, results["num_examples"], results["top1"],
                 results["top5"])
    return results

  def _save(self, checkpointer, state):
    step = int(state.step)
    arrays = {"params": state.variables, "ema_params": state.ema_variables,
              "opt_state": state.opt_state}
    checkpointer.save(step, arrays, {"data": self.data.describe()}, self.config.model)

  def _restore_or_init(self, checkpointer):
    if checkpointer.latest_step() is None:
      return self.pretrained_state() if self.config.get("init_from") else (
          self.init_state())
    template = jax.eval_shape(self.init_state)
    arrays, meta = checkpointer.restore({"params": template.variables,
                                         "ema_params": template.ema_variables,
                                         "opt_state": template.opt_state})
    if meta["data"] != self.data.describe():
      raise checkpoints.CheckpointError(
          checkpointer.directory,
          f"The checkpoint's input order {meta['data']} differs from this run's "
          f"{self.data.describe()}, so the resumed run would not continue the same "
          f"sequence of batches.",
          "resume with the checkpoint's data, mix, seed and batch size, or train in a "
          "new workdir.")
    logging.info("resumed from step %d", meta["step"])
    return jax.device_put(
        TrainState(step=jnp.asarray(meta["step"], jnp.int32),
                   variables=arrays["params"], ema_variables=arrays["ema_params"],
                   opt_state=arrays["opt_state"]), self._replicated)

  def pretrained_state(self):
    """Step 0 with the (EMA) variables of the trained classifier in config.init_from
    and a fresh optimizer: pretraining on other data, then this run's."""
    source = self.config.init_from
    got = checkpoints.read(source, ["ema_params", "model_config", "meta"])
    template = jax.eval_shape(self.init_state)
    want, have = _shapes(template.variables), _shapes(got["ema_params"])
    if want != have:
      differ = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
      raise checkpoints.CheckpointError(
          checkpoints.resolve(source),
          f"config.init_from's classifier ({got['model_config'].get('name')}) does not "
          f"fit this run's model ({self.config.model.name}): {len(differ)} variables "
          f"differ in name or shape, e.g. {differ[0]}: {have.get(differ[0])} there, "
          f"{want.get(differ[0])} here.",
          "set config.model to the model that run trained, or config.init_from='' to "
          "start from random weights.")
    # Two copies: the training step donates both trees, so they may not share buffers.
    variables, ema = (jax.tree.map(lambda x, t: jnp.array(x, t.dtype), got["ema_params"],
                                   template.variables) for _ in range(2))
    logging.info("initialised from %s (step %d), optimizer fresh", source,
                 got["meta"]["step"])
    return jax.device_put(
        TrainState(step=jnp.zeros((), jnp.int32), variables=variables,
                   ema_variables=ema, opt_state=self.tx.init(variables["params"])),
        self._replicated)


def _shapes(tree):
  """{"params/conv_0/kernel": (3, 3, 1, 32), …}: a variables tree's names and shapes."""
  return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(x.shape)
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def load_classifier(checkpoint_dir, use_ema=True, step=None):
  """(Flax module, variables) of a trained classifier's checkpoint (a run's workdir or
  its checkpoints folder): what evaluation and feature extraction need."""
  name = "ema_params" if use_ema else "params"
  got = checkpoints.read(checkpoint_dir, ["model_config", name], step)
  model = classifiers.build(ml_collections.ConfigDict(got["model_config"]))
  return model, got[name]
