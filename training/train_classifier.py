r"""Trains an image classifier on real, synthetic or mixed data; evaluates it on real.

  python -m synthfactory.training.train_classifier \
      --config=training/configs/classifier.py:fashion --workdir=workdirs/cls_fashion

Rerunning the same command after a kill resumes from the last checkpoint in workdir.
Writes metrics.jsonl (training), checkpoints/ and eval.json (top-1, top-5 and per-class
accuracy on config.data.eval).
"""
from absl import app
from absl import flags
from ml_collections import config_flags

from synthfactory.models import classifiers
from synthfactory.training import checkpoints
from synthfactory.training import classifier_data
from synthfactory.training import classifier_trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints and metrics go here.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  checkpoints.quiet_orbax_logs()
  data = classifier_data.make_train_data(config.data, config.batch_size, config.seed)
  eval_source = classifier_data.open_source(config.data.eval, config.data.data_dir,
                                            config.data.cache_mb)
  trainer = classifier_trainer.Trainer(classifiers.build(config.model), config, data)
  trainer.fit(_WORKDIR.value, eval_source, classifier_data.crops(config.data)[1])


if __name__ == "__main__":
  app.run(main)
