"""Registers a generated dataset folder with TFDS, in place, and reads it back.

`register(folder)` validates the folder against its manifest (every record read,
every hash checked), then writes TFDS's metadata (dataset_info.json, features.json,
metadata.json with the provenance) next to the shards with
`tfds.folder_dataset.write_metadata(..., check_data=False)` (DESIGN §4: letting TFDS
count records fails on ArrayRecord). The shards are not copied: the generation job
already wrote them under TFDS file names.

Reading: `data_source(folder)` (random access, what grain and `tfds.data_source`
give) and `tf_dataset(folder)` for tf.data users (`tfds.load` does not read
ArrayRecord). Both first check that every shard is present and holds the manifest's
number of records, so a damaged dataset errors instead of yielding fewer examples.
"""
import pathlib

from synthfactory.datasets import class_plan as class_plan_lib
from synthfactory.datasets import manifest as manifest_lib
from synthfactory.datasets import shards as shards_lib

DESCRIPTION = ("Synthetic images sampled from a class-conditional diffusion model "
               "(Azizi et al. 2023, 'Synthetic Data from Diffusion Models Improves "
               "ImageNet Classification'), class-balanced by a class plan.")
CITATION = """@article{azizi2023synthetic,
  title={Synthetic Data from Diffusion Models Improves ImageNet Classification},
  author={Azizi, Shekoofeh and Kornblith, Simon and Saharia, Chitwan and Norouzi,
          Mohammad and Fleet, David J.},
  journal={Transactions on Machine Learning Research}, year={2023}}"""


class DatasetError(ValueError):
  """A generated dataset folder is incomplete, damaged or not registered."""


def _manifest(folder):
  try:
    return manifest_lib.read_json(pathlib.Path(folder) / manifest_lib.MANIFEST_FILE,
                                  "manifest")
  except manifest_lib.ManifestError as e:
    raise DatasetError(f"{e} Generate the dataset into {folder} first "
                       "(python -m synthfactory.beam_jobs.generate).") from e


def features(m):
  plan = class_plan_lib.ClassPlan.from_dict(m["plan"])
  return shards_lib.features(plan.names, m["image"]["shape"], m["image"]["encoding"])


def provenance(m):
  """What made the dataset: stored as the TFDS dataset's metadata.json."""
  return {"checkpoint": m["model"], "sampler": m["sampler"],
          "sr_stages": m.get("sr_stages", []), "seed": m["seed"],
          "batch_size": m["batch_size"], "package_version": m["package_version"],
          "class_plan": {"source": m["plan"]["source"],
                         "multiplier": m["plan"]["multiplier"],
                         "total": m["plan"]["total"]}}


def register(folder):
  """Validates `folder` fully and writes its TFDS metadata; returns the manifest."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(folder)
  m = _manifest(folder)
  problems = manifest_lib.problems(folder)
  if problems:
    raise DatasetError(f"{folder} fails validation, so it is not registered:\n  "
                       + "\n  ".join(problems) + "\nRe-run the generation job on "
                       "this folder (it rewrites damaged shards), then register.")
  split = tfds.core.SplitInfo(
      name=m["split"], shard_lengths=[s["num_records"] for s in m["shards"]],
      num_bytes=sum((folder / s["file"]).stat().st_size for s in m["shards"]))
  tfds.folder_dataset.write_metadata(
      data_dir=folder, features=features(m), split_infos=[split], check_data=False,
      description=DESCRIPTION, citation=CITATION,
      metadata=tfds.core.MetadataDict(provenance(m)))
  return m


def check_complete(folder):
  """Every shard present with the manifest's record count (cheap: file footers)."""
  from array_record.python import array_record_module as ar  # pylint: disable=g-import-not-at-top
  folder = pathlib.Path(folder)
  m = _manifest(folder)
  for s in m["shards"]:
    path = folder / s["file"]
    try:
      reader = ar.ArrayRecordReader(str(path))
      count = reader.num_records()
      reader.close()
    except Exception as e:  # pylint: disable=broad-except  (missing or truncated)
      raise DatasetError(f"Shard {path} is missing or damaged ({type(e).__name__}); "
                         "run python -m synthfactory.beam_jobs.validate --data_dir="
                         f"{folder} and re-run generation to repair it.") from e
    if count != s["num_records"]:
      raise DatasetError(f"Shard {path} holds {count} records, the manifest "
                         f"{s['num_records']}; re-run generation to repair it.")
  return m


def data_source(folder, split=None):
  """A random-access TFDS data source over a registered folder (numpy examples)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  m = check_complete(folder)
  if not (pathlib.Path(folder) / "dataset_info.json").exists():
    raise DatasetError(f"{folder} is not registered with TFDS; call "
                       "tfds_builders.registration.register on it first.")
  return tfds.builder_from_directory(str(folder)).as_data_source(
      split=split or m["split"])


def tf_dataset(folder):
  """A tf.data.Dataset of decoded examples, in shard and record order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  m = check_complete(folder)
  files = [str(pathlib.Path(folder) / s["file"]) for s in m["shards"]]

  def records():
    for f in files:
      yield from shards_lib.iter_records(f)

  feats = features(m)
  ds = tf.data.Dataset.from_generator(
      records, output_signature=tf.TensorSpec((), tf.string))
  return ds.map(feats.deserialize_example, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True).apply(
                    tf.data.experimental.assert_cardinality(m["num_records"]))
