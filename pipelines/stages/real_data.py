"""Stage `real_data`: the real dataset, prepared as TFDS (ArrayRecord) for every
later stage to read.

Fashion-MNIST comes from its idx files (the Debian package, $FASHION_MNIST_DIR or
config.real.dir) through the `fashion_mnist_local` builder; a dataset that TFDS can
already read (config.real.source="tfds", e.g. imagenet2012 prepared by the user) is
only checked to be there.
"""
import os
import pathlib

from absl import logging
import tensorflow_datasets as tfds

from synthfactory.datasets import fashion_mnist
from synthfactory.pipelines import runner
from synthfactory.pipelines.stages import common
from synthfactory.tfds_builders.fashion_mnist_local import (
    fashion_mnist_local_dataset_builder as fmnist_builder)


def _idx_files(folder):
  folder = pathlib.Path(folder)
  names = sorted(p.name for p in folder.glob("*-ubyte*"))
  return {name: common.path_sha256(folder / name) for name in names}


def missing(config):
  """What this stage needs that is not there (empty: ready)."""
  real = config.real
  if real.source == "fashion_mnist":
    try:
      fashion_mnist.load("test", real.dir or None)
    except fashion_mnist.FashionMnistError as e:
      return [str(e)]
    return []
  try:
    if not tfds.builder(real.name, data_dir=real.data_dir or None).is_prepared():
      raise ValueError("not prepared")
  except Exception:  # TFDS raises several types for "unknown" and "not prepared".
    return [f"real data: TFDS dataset {real.name!r} is not prepared in "
            f"{real.data_dir or '~/tensorflow_datasets'}; prepare it (as ArrayRecord) "
            f"with `tfds build {real.name} --file_format=array_record "
            f"--data_dir=<dir> --manual_dir=<its downloaded files>` and set "
            f"--config.real.data_dir=<dir>."]
  return []


def make(config):
  real = config.real

  def inputs():
    if real.source == "fashion_mnist":
      folder = real.dir or fashion_mnist.default_dir()
      return {"source": real.source, "idx_files": _idx_files(folder),
              "builder_version": str(fmnist_builder.Builder.VERSION)}
    return common.plain(real)

  def run(stage_dir, upstream):
    del upstream
    if real.source != "fashion_mnist":
      data_dir, name = real.data_dir, real.name
    else:
      data_dir, name = os.path.join(stage_dir, "tfds"), "fashion_mnist_local"
      builder = fmnist_builder.Builder(data_dir=data_dir)
      logging.info("preparing %s from the idx files in %s", name,
                   real.dir or fashion_mnist.default_dir())
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=real.dir or fashion_mnist.default_dir()))
    builder = tfds.builder(name, data_dir=data_dir or None)
    splits = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    return {"name": name, "data_dir": data_dir, "splits": splits,
            "num_classes": builder.info.features["label"].num_classes,
            "class_names": builder.info.features["label"].names}

  return runner.Stage("real_data", run, inputs)
