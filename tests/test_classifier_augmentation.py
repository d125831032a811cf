"""results/classifier_augmentation.py: the recipes it retrains the workflow's classifier
stage with, and the real-only runs it reuses across mixes."""
import pytest

from synthfactory.pipelines.configs import fashion
from synthfactory.training import classifier_trainer
import classifier_augmentation  # from results/ (pytest.ini's pythonpath)


def test_pad_crop_flip_is_the_full_workflows_own_recipe():
  config = classifier_augmentation.recipe_config(
      "pad_crop_flip", "small_cnn", ["real", "real+synthetic"], "concat")
  assert (config.classifier.to_dict() ==
          fashion.get_config("full").classifier.to_dict())


def test_none_turns_off_only_the_augmentation():
  config = classifier_augmentation.recipe_config(
      "none", "small_cnn", ["real", "real+synthetic"], "concat+filter:0.9")
  full = fashion.get_config("full").classifier
  assert (config.classifier.augment.pad_crop, config.classifier.augment.flip) == (0, False)
  assert config.mixed.min_confidence == 0.9
  config.classifier.augment.update(pad_crop=full.augment.pad_crop,
                                   flip=full.augment.flip)
  assert config.classifier.to_dict() == full.to_dict()


def test_an_unknown_recipe_is_refused_with_the_choices():
  with pytest.raises(SystemExit, match=r"unknown recipe 'mixup'.*'none'"):
    classifier_augmentation.recipe_config("mixup", "small_cnn", ["real"], "concat")


def _real_run(stage_dir, finished):
  run = stage_dir / "real"
  run.mkdir(parents=True)
  (run / "run_config.json").write_text("{}")
  if finished:
    (run / classifier_trainer.EVAL_FILE).write_text('{"top1": 0.9}')
  return run


def test_a_finished_real_only_run_is_reused_by_the_recipes_other_mixes(tmp_path):
  _real_run(tmp_path / "concat+filter_0.9", finished=True)
  target = tmp_path / "concat"
  classifier_augmentation.reuse_real_run(tmp_path, target)
  assert (target / "real" / classifier_trainer.EVAL_FILE).read_text() == '{"top1": 0.9}'


def test_unfinished_or_existing_real_only_runs_are_left_alone(tmp_path):
  _real_run(tmp_path / "concat+filter_0.9", finished=False)
  classifier_augmentation.reuse_real_run(tmp_path, tmp_path / "concat")
  assert not (tmp_path / "concat" / "real").exists()  # Nothing finished to copy.
  own = _real_run(tmp_path / "ratio_0.25", finished=False)
  _real_run(tmp_path / "a_finished", finished=True)
  classifier_augmentation.reuse_real_run(tmp_path, tmp_path / "ratio_0.25")
  assert not (own / classifier_trainer.EVAL_FILE).exists()  # Its own run resumes.
