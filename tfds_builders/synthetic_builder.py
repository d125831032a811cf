"""The TFDS builder shared by the synthetic datasets: it registers generated shards.

`download_and_prepare` (what `tfds build` runs) takes a dataset folder written by the
generation job — the one given as `--manual_dir`, or else one it generates itself
into `<download_dir>/synthfactory/<name>/<config>` (resumable) from the checkpoint in
$SYNTHFACTORY_CHECKPOINT — validates it fully, checks that it is the dataset the
config names, and links (or copies) its ArrayRecord shards, already in TFDS file
naming, into the TFDS data folder with split info taken from the manifest (DESIGN §4).

Environment variables (they reach `tfds build` and its Beam workers alike):
  SYNTHFACTORY_CHECKPOINT   diffusion checkpoint to generate from (no --manual_dir);
  SYNTHFACTORY_BEAM_ARGS    Beam pipeline options for the generation job, e.g.
                            "--direct_running_mode=multi_processing
                            --direct_num_workers=8";
  SYNTHFACTORY_OVERRIDES    JSON of generation config overrides (flattened keys),
                            e.g. '{"sampler.steps": 250, "num_shards": 64}'.
"""
import dataclasses
import json
import os
import pathlib
import shlex
import shutil

import tensorflow_datasets as tfds

from synthfactory.datasets import manifest as manifest_lib
from synthfactory.datasets import shards as shards_lib
from synthfactory.tfds_builders import registration

CHECKPOINT_ENV, BEAM_ARGS_ENV, OVERRIDES_ENV = (
    "SYNTHFACTORY_CHECKPOINT", "SYNTHFACTORY_BEAM_ARGS", "SYNTHFACTORY_OVERRIDES")


@dataclasses.dataclass(kw_only=True)
class SyntheticConfig(tfds.core.BuilderConfig):
  resolution: int = 0
  multiplier: str = "1"


def configs(resolutions, multipliers):
  """`<resolution>x_<multiplier>x` configs (DESIGN §3 naming)."""
  return [SyntheticConfig(name=f"{r}x_{m}x", resolution=r, multiplier=m,
                          description=f"{m}× the real per-class counts at {r} px.")
          for r in resolutions for m in multipliers]


class SyntheticBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the synthetic dataset builders (see the module docstring)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Optional: a dataset folder written by `python -m "
      "synthfactory.beam_jobs.generate` for this config. Without it, set "
      f"{CHECKPOINT_ENV} to a diffusion checkpoint and the build generates one.")
  CHANNELS = 3
  CLASS_IDS_KEY = "class_ids"  # Metadata key of class_ids().

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    # ArrayRecord, not TFDS's default tfrecord; no class attribute sets it (§4).
    if file_format is None and not self.is_prepared():
      self.info.set_file_format("array_record", override=True)

  def class_names(self):
    raise NotImplementedError

  def class_ids(self):
    """Stable class ids (e.g. WordNet ids) kept in the metadata, or None."""
    return None

  def generate_config(self):
    """The generation job config (beam_jobs/configs/generate.py) of this config."""
    raise NotImplementedError

  def _info(self):
    shape = (self.builder_config.resolution,) * 2 + (self.CHANNELS,)
    ids = self.class_ids()
    return self.dataset_info_from_configs(
        description=registration.DESCRIPTION, citation=registration.CITATION,
        features=shards_lib.features(self.class_names(), shape),
        supervised_keys=("image", "label"),
        # Provenance is added when prepared.
        metadata=tfds.core.MetadataDict(
            {} if ids is None else {self.CLASS_IDS_KEY: list(ids)}))

  def _split_generators(self, dl_manager):
    raise NotImplementedError("Synthetic datasets are registered from generated "
                              "shards in _download_and_prepare.")

  def _generate_examples(self):
    raise NotImplementedError("Synthetic datasets are registered from generated "
                              "shards in _download_and_prepare.")

  def _source_folder(self, dl_manager):
    try:
      return pathlib.Path(dl_manager.manual_dir)
    except AssertionError:  # No --manual_dir: generate.
      pass
    from synthfactory.beam_jobs import generation  # pylint: disable=g-import-not-at-top
    config = self.generate_config()
    config.checkpoint = os.environ.get(CHECKPOINT_ENV, "")
    if not config.checkpoint:
      raise registration.DatasetError(
          f"Nothing to register for {self.name}/{self.builder_config.name}: pass a "
          f"generated dataset folder as --manual_dir, or set {CHECKPOINT_ENV} to a "
          "diffusion checkpoint to generate one.")
    config.update_from_flattened_dict(json.loads(os.environ.get(OVERRIDES_ENV) or
                                                 "{}"))
    folder = pathlib.Path(dl_manager.download_dir) / "synthfactory" / self.name / (
        self.builder_config.name)
    generation.run(config, folder,
                   beam_args=shlex.split(os.environ.get(BEAM_ARGS_ENV, "")))
    return folder

  def _check_matches_config(self, m):
    want = {"name": self.name,
            "resolution": self.builder_config.resolution,
            "multiplier": self.builder_config.multiplier,
            "classes": self.class_names()}
    have = {"name": m["name"], "resolution": m["image"]["shape"][0],
            "multiplier": m["plan"]["multiplier"],
            "classes": [c["name"] for c in m["plan"]["classes"]]}
    wrong = [k for k in want if want[k] != have[k]]
    if wrong:
      raise registration.DatasetError(
          f"The generated dataset is not {self.name}/{self.builder_config.name}: "
          + ", ".join(f"{k} is {str(have[k])[:60]}, expected {str(want[k])[:60]}"
                      for k in wrong) + ".")

  def _download_and_prepare(self, dl_manager, download_config=None):
    del download_config
    source = self._source_folder(dl_manager)
    m = registration.check_complete(source)
    self._check_matches_config(m)
    problems = manifest_lib.problems(source)
    if problems:
      raise registration.DatasetError(f"{source} fails validation:\n  "
                                      + "\n  ".join(problems))
    target = pathlib.Path(self.data_dir)
    for name in [s["file"] for s in m["shards"]] + [manifest_lib.MANIFEST_FILE,
                                                   manifest_lib.PLAN_FILE]:
      try:
        os.link(source / name, target / name)  # Register, do not copy, when we can.
      except OSError:
        shutil.copyfile(source / name, target / name)
    split = tfds.core.SplitInfo(
        name=m["split"], shard_lengths=[s["num_records"] for s in m["shards"]],
        num_bytes=sum((source / s["file"]).stat().st_size for s in m["shards"]),
        filename_template=self._get_filename_template(m["split"]))
    self.info.set_splits(tfds.core.SplitDict([split]))
    self.info.metadata.update(registration.provenance(m))
