"""datasets/tfds_open: the one way readers open a prepared TFDS dataset, and the
errors that name the fix."""
from etils import epath
import numpy as np
import pytest
import tensorflow_datasets as tfds

from synthfactory.datasets import tfds_open


class OpenTiny(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Four 2×2 images with a ClassLabel."""
  pkg_dir_path = epath.Path(__file__).parent
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(2, 2, 1)),
        "label": tfds.features.ClassLabel(names=["a", "b"])}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(4):
      yield i, {"image": np.full((2, 2, 1), i, np.uint8), "label": i % 2}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
  dirs = {}
  for fmt in ("array_record", "tfrecord"):
    dirs[fmt] = tmp_path_factory.mktemp(fmt)
    OpenTiny(data_dir=str(dirs[fmt]), file_format=fmt).download_and_prepare()
  return dirs


def test_by_name_and_by_folder_open_the_same(data_dirs):
  by_name = tfds_open.prepared_builder("open_tiny", str(data_dirs["array_record"]))
  folder = str(data_dirs["array_record"] / "open_tiny" / "1.0.0")
  by_folder = tfds_open.prepared_builder(folder)
  a = tfds_open.data_source(by_name, "train[:3]")
  b = tfds_open.data_source(by_folder, "train[:3]")
  assert len(a) == len(b) == 3
  for i in range(3):
    np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
    assert a[i]["label"] == b[i]["label"] == a[i]["image"][0, 0, 0] % 2


def test_errors_name_the_problem_and_the_fix(data_dirs, tmp_path):
  with pytest.raises(tfds_open.DatasetError,
                     match=r"'no_such_ds' not found.*tfds build no_such_ds"):
    tfds_open.builder("no_such_ds", str(tmp_path))
  with pytest.raises(tfds_open.DatasetError, match=(
      r"'mnist' is not prepared .*`tfds build mnist --file_format=array_record "
      f"--data_dir={tmp_path}`")):
    tfds_open.prepared_builder("mnist", str(tmp_path))
  with pytest.raises(tfds_open.DatasetError, match="Pass the version folder, e.g."):
    tfds_open.builder(str(data_dirs["array_record"] / "open_tiny"))
  found = tfds_open.prepared_builder("open_tiny", str(data_dirs["array_record"]))
  with pytest.raises(tfds_open.DatasetError, match=r"no split 'test'.*\['train'\]"):
    tfds_open.data_source(found, "test")
  with pytest.raises(tfds_open.DatasetError, match=r"no split 'test'.*\['train'\]"):
    tfds_open.check_split(found, "test")
  tfrecord = tfds_open.prepared_builder("open_tiny", str(data_dirs["tfrecord"]))
  with pytest.raises(tfds_open.DatasetError,
                     match="stored as tfrecord, not ArrayRecord.*--file_format=array_record"):
    tfds_open.data_source(tfrecord, "train")
