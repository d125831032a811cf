"""Stage `build`: registers the generated dataset with TFDS (what `tfds build
<name> --config=<res>x_<N>x --manual_dir=<dataset>` does), so classifiers and users
read it with `tfds.data_source` like any other TFDS dataset."""
import os
import pathlib

import tensorflow_datasets as tfds

from synthfactory.pipelines import runner
from synthfactory.tfds_builders import all as all_builders  # Registers the builders.

del all_builders


def missing(config):
  """A plan multiplier that the dataset's TFDS builder has no config for (found before
  hours of generation, not after)."""
  name, multiplier = config.generate.name, str(config.generate.plan.multiplier)
  try:
    listed = [c.multiplier for c in tfds.builder_cls(name).BUILDER_CONFIGS]
  except Exception as e:  # TFDS raises several types for unknown names.
    return [f"TFDS has no builder {name!r} for the generated dataset ({e}); set "
            "config.generate.name to one in tfds_builders/."]
  if multiplier not in listed:
    return [f"config.generate.plan.multiplier={multiplier}: the TFDS builder {name} "
            f"has no config for it, so the generated dataset could not be registered; "
            f"pick one of {sorted(set(listed), key=float)} (or add it to the builder's "
            "MULTIPLIERS in tfds_builders/)."]
  return []


def make(config):
  del config  # Everything comes from the generated dataset's manifest.

  def run(stage_dir, upstream):
    generated = upstream["generate"]
    tfds_config = f"{generated['resolution']}x_{generated['multiplier']}x"
    data_dir = os.path.join(stage_dir, "tfds")
    try:
      builder = tfds.builder(f"{generated['name']}/{tfds_config}", data_dir=data_dir)
    except Exception as e:  # TFDS raises several types for unknown names/configs.
      raise ValueError(
          f"TFDS has no builder config {generated['name']}/{tfds_config} for the "
          f"generated dataset: {e}. Pick a plan multiplier that the builder lists "
          "(tfds_builders/).") from e
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=generated["dataset_dir"]))
    folder = pathlib.Path(builder.data_dir)
    return {"data_dir": data_dir, "tfds_name": f"{builder.name}/{tfds_config}",
            "folder": str(folder),
            "num_examples": builder.info.splits[generated["split"]].num_examples}

  return runner.Stage("build", run)
