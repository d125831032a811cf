"""synthetic_imagenet: N× ImageNet-2012's per-class train counts, at 64/256/1024 px.

  tfds build synthetic_imagenet --imports=synthfactory.tfds_builders.all \
      --config=1024x_4x --manual_dir=<folder from the generation job>

Class names are WordNet ids (readable names are not shipped yet). Generating from
`tfds build` needs a model of the config's resolution; the 64 → 256 → 1024 cascade
is not part of the generation job yet, so 256/1024 px configs register folders.
"""
from etils import epath
import tensorflow_datasets as tfds

from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.datasets import class_plan
from synthfactory.tfds_builders import synthetic_builder


class Builder(synthetic_builder.SyntheticBuilder):
  """Synthetic ImageNet."""

  # TFDS infers the builder's folder from the import path, which package_dir
  # mapping breaks (synthfactory.tfds_builders lives in tfds_builders/).
  pkg_dir_path = epath.Path(__file__).parent
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: ArrayRecord shards with provenance."}
  BUILDER_CONFIGS = synthetic_builder.configs(
      [64, 256, 1024], [str(m) for m in range(1, 11)])

  def class_names(self):
    return class_plan.imagenet2012(1).names

  def generate_config(self):
    config = generate_configs.get_config("fashion")
    config.name = self.name
    config.plan.update(source="imagenet2012",
                       multiplier=self.builder_config.multiplier)
    return config
