"""Opening a prepared TFDS dataset: the one place every reader in the package goes
through (classifier and diffusion inputs, evaluation image sets, label histograms).

A dataset is named by its registered name ("name[/config][:version]", prepared in a
data_dir) or by its folder (the version folder holding dataset_info.json, local or
gs://). Readers use random access (`as_data_source`), which needs ArrayRecord files
(DESIGN §4). Every failure is a DatasetError naming the dataset and the fix; callers
prefix it with what they were opening.
"""
import pathlib


class DatasetError(ValueError):
  """A TFDS dataset is not found, not prepared, lacks a split, or is not ArrayRecord."""


def build_hint(name, data_dir=None):
  """The command that prepares `name` so these readers can open it."""
  return (f"`tfds build {name} --file_format=array_record --data_dir="
          f"{data_dir or '<dir>'}` (add --imports=synthfactory.tfds_builders.all for "
          "this package's datasets, e.g. fashion_mnist_local), then read it with that "
          "data_dir")


def _is_folder(name):
  from etils import epath  # Local and gs:// folders alike.
  return name.startswith("gs://") or epath.Path(name).is_dir()


def builder(name, data_dir=None):
  """The builder of a registered name or of a dataset folder (not checked prepared)."""
  from etils import epath
  import tensorflow_datasets as tfds  # Heavy: only runs that read TFDS pay for it.
  if _is_folder(name):
    if not epath.Path(name).joinpath("dataset_info.json").exists():
      found = (sorted(str(p.parent) for p in pathlib.Path(name).glob(
          "**/dataset_info.json"))[:5] if not name.startswith("gs://") else [])
      raise DatasetError(
          f"{name} is not a TFDS dataset folder (no dataset_info.json). Pass the "
          f"version folder" + (f", e.g. {', '.join(found)}." if found else "."))
    return tfds.builder_from_directory(name)
  try:
    return tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetError(
        f"TFDS dataset {name!r} not found: it is not a registered builder (see "
        f"tfds.list_builders()) and no prepared copy is in data_dir "
        f"{data_dir or '(TFDS default)'}. Check the name and data_dir, give the "
        f"dataset's folder ('<data_dir>/<name>/<version>'), or prepare it: "
        f"{build_hint(name, data_dir)}.") from None


def _not_prepared(name, found):
  return DatasetError(f"TFDS dataset {name!r} is not prepared in {found.data_dir}: "
                      f"prepare it first with {build_hint(name, found.data_dir_root)}.")


def prepared_builder(name, data_dir=None):
  """builder(), refused unless the dataset is prepared."""
  found = builder(name, data_dir)
  if not found.is_prepared():
    raise _not_prepared(name, found)
  return found


def check_split(found, split, name=None):
  """Refuses a split (slices such as 'train[:1000]' allowed) the dataset lacks."""
  try:
    found.info.splits[split]
  except (KeyError, ValueError):
    raise DatasetError(f"{name or found.info.full_name!r} has no split {split!r}; "
                       f"its splits are {sorted(found.info.splits)}.") from None


def data_source(found, split, name=None, **kwargs):
  """`found.as_data_source(split, **kwargs)` (`name`: as the user wrote it, for the
  hints). A failure is diagnosed after the fact, so that a mocked builder
  (tfds.testing.mock_data) opens as a prepared one does."""
  name = name or found.name
  try:
    return found.as_data_source(split, **kwargs)
  except Exception as e:  # TFDS raises several types for these cases.
    if not found.is_prepared():
      raise _not_prepared(name, found) from None
    check_split(found, split, name)
    if isinstance(e, NotImplementedError):
      raise DatasetError(
          f"{name!r} is stored as {found.info.file_format.value}, not ArrayRecord, "
          f"which random access needs. Re-prepare it: {build_hint(name)}.") from None
    raise DatasetError(f"cannot open {found.info.full_name!r} split {split!r} "
                       f"({type(e).__name__}: {str(e)[:300]}).") from e
