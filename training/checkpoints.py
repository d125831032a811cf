"""Orbax checkpoints of a diffusion run, and loading a trained model from one.

A run keeps its checkpoints in `<workdir>/checkpoints/<step>/`, each with the items
`params`, `ema_params` and `opt_state` (arrays), `meta` (JSON: step and data
position), `model_config` (JSON: the U-Net config) and, for a text-conditioned model,
`text_table` (its per-class prompt embeddings), so a checkpoint directory alone
rebuilds its model. Saves are waited for: once "checkpoint saved" is logged, a kill
loses nothing.
"""
import logging as std_logging
import pathlib

from absl import logging
import ml_collections
import orbax.checkpoint as ocp

from synthfactory.models import diffusion_model

SUBDIR = "checkpoints"
_ARRAYS = ("params", "ema_params", "opt_state")
_JSON = ("meta", "model_config")


class CheckpointError(Exception):
  """A checkpoint is missing, unreadable, or does not fit the model."""

  def __init__(self, path, problem, fix):
    super().__init__(f"{problem}\n  checkpoint: {path}\n  fix: {fix}")
    self.path = path


def quiet_orbax_logs():
  """Keeps Orbax's INFO lines (a dozen per save) out of a job's log; warnings stay."""
  logging.get_absl_handler().addFilter(
      lambda r: r.levelno >= std_logging.WARNING or "/orbax/" not in r.pathname)


def resolve(path):
  """The checkpoint directory of `path`: a run's workdir or its checkpoints folder."""
  path = pathlib.Path(path)
  return path / SUBDIR if (path / SUBDIR).is_dir() else path


class Checkpointer:
  """Saves and restores the train state of one run (its `<workdir>/checkpoints`)."""

  def __init__(self, workdir, keep):
    self.directory = pathlib.Path(workdir).absolute() / SUBDIR
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep))

  def latest_step(self):
    return self._manager.latest_step()

  def save(self, step, arrays, meta, model_config, text_table=None):
    """Saves `arrays` ({name: pytree} for params, ema_params, opt_state), the run's
    meta, its model config and text table (if any) as checkpoint `step`; returns
    when it is on disk."""
    items = {n: ocp.args.StandardSave(arrays[n]) for n in _ARRAYS}
    if text_table is not None:
      items["text_table"] = ocp.args.StandardSave({"table": text_table})
    self._manager.save(step, args=ocp.args.Composite(
        **items, meta=ocp.args.JsonSave({"step": step, **meta}),
        model_config=ocp.args.JsonSave(model_config.to_dict())))
    self._manager.wait_until_finished()
    logging.info("checkpoint saved at step %d: %s", step, self.directory / str(step))

  def restore(self, templates):
    """The latest checkpoint: ({name: pytree shaped like templates[name]}, meta)."""
    step = self.latest_step()
    got = _restore(self._manager, self.directory, step, meta=ocp.args.JsonRestore(),
                   **{n: ocp.args.StandardRestore(templates[n]) for n in _ARRAYS})
    return {n: got[n] for n in _ARRAYS}, got["meta"]

  def close(self):
    self._manager.close()


def _restore(manager, directory, step, **items):
  try:
    return manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # Orbax/TensorStore raise many types for damaged files.
    raise CheckpointError(
        directory / str(step),
        f"Checkpoint step {step} cannot be read: {type(e).__name__}: {str(e)[:300]}",
        "it is corrupt, incomplete, or saved for a different model. Delete that "
        "step's folder to fall back to an earlier step, or point at another "
        "checkpoint.") from e


def read(checkpoint_dir, items, step=None):
  """Reads `items` (names) of one step (default: the latest) of a checkpoint dir.

  Array items come back as saved, on the default device; JSON items as dicts.
  """
  directory = resolve(checkpoint_dir).absolute()
  if not directory.is_dir():
    raise CheckpointError(directory, "No checkpoint directory there.",
                          "pass a training run's workdir or its checkpoints folder.")
  # save_interval_steps/create: what read_only implies anyway, minus two warnings.
  options = ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0,
                                         create=False)
  with ocp.CheckpointManager(directory, options=options) as manager:
    steps = manager.all_steps()
    if not steps or (step is not None and step not in steps):
      raise CheckpointError(
          directory, f"No checkpoint {'steps' if step is None else f'step {step}'} "
          f"found (steps present: {sorted(steps)}).",
          "train a model into this directory first, or pick a step that exists.")
    step = max(steps) if step is None else step
    args = {n: ocp.args.JsonRestore() if n in _JSON else ocp.args.StandardRestore()
            for n in items}
    restored = _restore(manager, directory, step, **args)
  return {n: restored[n] for n in items}


def load_model_config(checkpoint_dir, step=None):
  """The U-Net config (ConfigDict) a checkpoint was trained with."""
  cfg = read(checkpoint_dir, ["model_config"], step)["model_config"]
  return ml_collections.ConfigDict(cfg)


def load_params(checkpoint_dir, use_ema=True, step=None):
  """A trained model's params (the EMA weights unless use_ema=False)."""
  name = "ema_params" if use_ema else "params"
  return read(checkpoint_dir, [name], step)[name]


def load_model(checkpoint_dir, use_ema=True, step=None):
  """(DiffusionModel, params) of a checkpoint: what sampling and generation need."""
  name = "ema_params" if use_ema else "params"
  config = load_model_config(checkpoint_dir, step)
  items = [name] + (["text_table"] if config.context_dim is not None else [])
  got = read(checkpoint_dir, items, step)
  text_table = got["text_table"]["table"] if "text_table" in got else None
  return diffusion_model.DiffusionModel.from_config(config, text_table), got[name]
