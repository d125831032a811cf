"""synthetic_imagenet: N× ImageNet-2012's per-class train counts, at 64/256/1024 px.

  tfds build synthetic_imagenet --imports=synthfactory.tfds_builders.all \
      --config=1024x_4x --manual_dir=<folder from the generation job>

Labels follow TFDS imagenet2012 (sorted WordNet ids); the ClassLabel names are the
CLIP-style readable names (`info.features["label"].int2str(0) == "tench"`) and
`info.metadata["wordnet_ids"]` keeps the WordNet ids. Generating from
`tfds build` samples with the base model only; for 256/1024 px configs run the
generation job with its cascade (`sr_stages`) and register its folder (--manual_dir).
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
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release: ArrayRecord shards with provenance.",
      "1.1.0": "ClassLabel names are CLIP-style readable names; WordNet ids in "
               "metadata['wordnet_ids'].",
  }
  BUILDER_CONFIGS = synthetic_builder.configs(
      [64, 256, 1024], [str(m) for m in range(1, 11)])
  CLASS_IDS_KEY = "wordnet_ids"

  def class_names(self):
    return class_plan.imagenet2012_names()

  def class_ids(self):
    return class_plan.imagenet2012_ids()

  def generate_config(self):
    config = generate_configs.get_config("fashion")
    config.name = self.name
    config.plan.update(source="imagenet2012",
                       multiplier=self.builder_config.multiplier)
    return config
