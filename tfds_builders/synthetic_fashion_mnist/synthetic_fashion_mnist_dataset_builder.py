"""synthetic_fashion_mnist: N× Fashion-MNIST's class counts (6000 a class at 1×), 28 px.

  tfds build synthetic_fashion_mnist --imports=synthfactory.tfds_builders.all \
      --config=28x_1x --manual_dir=<folder from the generation job>
or, generating: SYNTHFACTORY_CHECKPOINT=<run workdir> tfds build ... (no manual dir).
"""
from etils import epath
import tensorflow_datasets as tfds

from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.datasets import fashion_mnist
from synthfactory.tfds_builders import synthetic_builder

MULTIPLIERS = ("0.001", "0.01", "0.05", "0.1", "0.25", "0.5", "1", "2", "4", "10")


class Builder(synthetic_builder.SyntheticBuilder):
  """Synthetic Fashion-MNIST."""

  # TFDS infers the builder's folder from the import path, which package_dir
  # mapping breaks (synthfactory.tfds_builders lives in tfds_builders/).
  pkg_dir_path = epath.Path(__file__).parent
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: ArrayRecord shards with provenance."}
  BUILDER_CONFIGS = synthetic_builder.configs([28], MULTIPLIERS)
  CHANNELS = 1

  def class_names(self):
    return list(fashion_mnist.CLASS_NAMES)

  def generate_config(self):
    config = generate_configs.get_config("fashion")
    config.name = self.name
    config.plan.multiplier = self.builder_config.multiplier
    return config
