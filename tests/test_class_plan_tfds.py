"""Class plans from the label histogram of a prepared TFDS dataset (plan.source=tfds)."""
from etils import epath
import numpy as np
import pytest
import tensorflow_datasets as tfds

from synthfactory.beam_jobs import generation
from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.datasets import class_plan

_TRAIN_LABELS = [0] * 5 + [2] * 3 + [1]


class _TinyBase(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  pkg_dir_path = epath.Path(__file__).parent
  VERSION = tfds.core.Version("1.0.0")
  LABEL = tfds.features.ClassLabel(names=["cat", "dog", "eel"])

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(4, 4, 1)), "label": self.LABEL}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(_TRAIN_LABELS),
            "test": self._generate_examples([1, 2])}

  def _generate_examples(self, labels):
    for i, label in enumerate(labels):
      yield i, {"image": np.full((4, 4, 1), i, np.uint8), "label": label}


class PlanTinyLabelled(_TinyBase):
  """Three classes, nine train images."""


class PlanTinyUnlabelled(_TinyBase):
  """Its `label` is a plain integer, not a ClassLabel."""
  LABEL = tfds.features.Scalar(np.int64)


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
  dirs = {}
  for fmt in ("array_record", "tfrecord"):
    dirs[fmt] = str(tmp_path_factory.mktemp(fmt))
    PlanTinyLabelled(data_dir=dirs[fmt], file_format=fmt).download_and_prepare()
  PlanTinyUnlabelled(data_dir=dirs["array_record"],
                     file_format="array_record").download_and_prepare()
  return dirs


@pytest.mark.parametrize("fmt", ["array_record", "tfrecord"])
def test_plan_from_tfds_label_histogram(data_dirs, fmt):
  plan = class_plan.from_tfds("plan_tiny_labelled", 2, data_dir=data_dirs[fmt])
  assert [c.base_count for c in plan.classes] == [5, 1, 3]
  assert plan.counts.tolist() == [10, 2, 6]
  assert plan.names == ["cat", "dog", "eel"]
  assert plan.source == "tfds:plan_tiny_labelled/1.0.0:train"
  test = class_plan.from_tfds("plan_tiny_labelled", 1, split="test",
                              data_dir=data_dirs[fmt])
  assert test.counts.tolist() == [0, 1, 1]


def test_generation_config_source_tfds(data_dirs):
  config = generate_configs.get_config("fashion")
  config.plan.update(source="tfds", tfds_name="plan_tiny_labelled", multiplier="0.5",
                     data_dir=data_dirs["array_record"])
  plan = generation.build_plan(config.plan)
  assert plan.total == 5 and plan.names == ["cat", "dog", "eel"]
  config.plan.tfds_name = ""
  with pytest.raises(generation.GenerateError, match="tfds_name"):
    generation.build_plan(config.plan)


def test_unknown_dataset_names_the_fix(tmp_path):
  with pytest.raises(class_plan.ClassPlanError,
                     match=r"no_such_dataset.*tfds build no_such_dataset"):
    class_plan.from_tfds("no_such_dataset", 1, data_dir=str(tmp_path))


def test_unprepared_dataset_names_the_fix(tmp_path):
  with pytest.raises(class_plan.ClassPlanError, match=(
      r"'plan_tiny_labelled' is not prepared.*`tfds build plan_tiny_labelled "
      f"--file_format=array_record --data_dir={tmp_path}`")):
    class_plan.from_tfds("plan_tiny_labelled", 1, data_dir=str(tmp_path))


def test_dataset_without_class_label_is_refused(data_dirs):
  with pytest.raises(class_plan.ClassPlanError, match="no ClassLabel feature 'label'"):
    class_plan.from_tfds("plan_tiny_unlabelled", 1,
                         data_dir=data_dirs["array_record"])


def test_unknown_split_lists_the_splits(data_dirs):
  with pytest.raises(class_plan.ClassPlanError, match=r"no split 'val'.*'train'"):
    class_plan.from_tfds("plan_tiny_labelled", 1, split="val",
                         data_dir=data_dirs["array_record"])
