"""Stage `diffusion`: the class-conditional diffusion model the factory samples from.

Either a trained checkpoint (config.diffusion.checkpoint: the shipped Fashion-MNIST
model by default, or any training run's workdir) that is checked and identified by
its content hash, or a model trained here with the training job's code on the real
data of the `real_data` stage (config.diffusion.train, when no checkpoint is given).
Training resumes from its last checkpoint after an interruption.
"""
import os
import pathlib

from absl import logging

from synthfactory.pipelines import runner
from synthfactory.pipelines.stages import common
from synthfactory.training import checkpoints
from synthfactory.training import diffusion_trainer
from synthfactory.training import input_pipeline


def missing(config):
  path = config.diffusion.checkpoint
  if not path:
    if not config.diffusion.get("train"):
      return ["diffusion model: give a checkpoint (--config.diffusion.checkpoint="
              "<training run workdir>) or a training config (config.diffusion.train)."]
    return []
  try:
    checkpoints.load_model_config(path)
  except checkpoints.CheckpointError as e:
    return [f"diffusion checkpoint: {e}"]
  return []


def _train(config, stage_dir, real):
  cfg = config.diffusion.train.copy_and_resolve_references()
  cfg.data.update(source="tfds", name=real["name"], data_dir=real["data_dir"],
                  split="train")
  workdir = os.path.join(stage_dir, "run")
  source = input_pipeline.make_source(cfg.data)
  logging.info("training the diffusion model (%d steps) in %s", cfg.num_steps, workdir)
  diffusion_trainer.Trainer(diffusion_trainer.build_model(cfg), cfg).fit(source,
                                                                         workdir)
  return workdir


def make(config):
  diffusion = config.diffusion

  def inputs():
    if diffusion.checkpoint:
      return {"checkpoint": str(pathlib.Path(diffusion.checkpoint).absolute()),
              "sha256": common.path_sha256(checkpoints.resolve(diffusion.checkpoint))}
    return {"train": common.plain(diffusion.train)}

  def run(stage_dir, upstream):
    if diffusion.checkpoint:
      path = str(pathlib.Path(diffusion.checkpoint).absolute())
    else:
      path = _train(config, stage_dir, upstream["real_data"])
    model_config = checkpoints.load_model_config(path)  # Fails here if unreadable.
    return {"checkpoint": path,
            "sha256": common.path_sha256(checkpoints.resolve(path)),
            "image_size": model_config.image_size,
            "num_classes": model_config.num_classes}

  return runner.Stage("diffusion", run, inputs)
