r"""Trains (or fine-tunes) a class-conditional diffusion model.

  python -m synthfactory.training.train_diffusion \
      --config=training/configs/diffusion.py:fashion --workdir=workdirs/fashion

Rerunning the same command after a kill resumes from the last checkpoint in workdir.
Fine-tune with --config.init_from=<a trained run's workdir>.
"""
from absl import app
from absl import flags
from ml_collections import config_flags

from synthfactory.training import checkpoints
from synthfactory.training import diffusion_trainer
from synthfactory.training import input_pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints and metrics go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  checkpoints.quiet_orbax_logs()
  model = diffusion_trainer.build_model(config)
  source = input_pipeline.make_source(config.data)
  diffusion_trainer.Trainer(model, config).fit(source, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
