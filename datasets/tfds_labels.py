"""The label histogram of a prepared TFDS dataset, for class plans from any dataset.

TFDS metadata keeps only each split's size (`info.splits[split].num_examples`), not
its per-class counts, so the labels are read once. Only the `label` field of each
serialized example is parsed (a proto parse, no image decoding and no TensorFlow op
for ArrayRecord), in batches, with a progress log for large splits.
"""
import time

from absl import logging
import numpy as np

from synthfactory.datasets import class_plan
from synthfactory.datasets import tfds_open

_BATCH = 1024        # Records a read: ~110 MB of ImageNet examples.
_LOG_SECONDS = 10.0  # Progress log interval.


def _error(message):
  return class_plan.ClassPlanError(message)


def load_builder(name, data_dir=None):
  """The prepared builder of `name` ("name[/config][:version]") in `data_dir`."""
  try:
    return tfds_open.prepared_builder(name, data_dir)
  except tfds_open.DatasetError as e:
    raise _error(f"Class plan from TFDS: {e}") from None


def label_feature(builder):
  """The `label` ClassLabel feature of a builder, or a ClassPlanError."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = builder.info.features
  label = features["label"] if features and "label" in features else None
  if not isinstance(label, tfds.features.ClassLabel):
    have = ", ".join(f"{k}: {type(v).__name__}" for k, v in (features or {}).items())
    raise _error(f"TFDS dataset {builder.info.full_name} has no ClassLabel feature "
                 f"'label' to count (features: {have or 'none'}); a class plan "
                 "needs one.")
  return label


def _record_batches(builder, split):
  """Serialized examples of `split`, in lists of up to _BATCH."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  formats = builder.info.available_file_formats() or {builder.info.file_format}
  if tfds.core.FileFormat.ARRAY_RECORD in formats:
    source = builder.as_data_source(
        split, file_format="array_record",
        deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    for start in range(0, len(source), _BATCH):
      yield source.__getitems__(list(range(start, min(start + _BATCH,
                                                      len(source)))))
    return
  if tfds.core.FileFormat.TFRECORD not in formats:
    raise _error(f"TFDS dataset {builder.info.full_name} is stored as "
                 f"{sorted(f.value for f in formats)}; labels are read from "
                 "array_record or tfrecord.")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:  # Only file reads here: keep TF off the accelerators (DESIGN §4).
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialised by the caller: leave it be.
    pass
  files = [str(p) for p in builder.info.splits[split].filepaths]
  for batch in tf.data.TFRecordDataset(files).batch(_BATCH).as_numpy_iterator():
    yield list(batch)


def _label(record):
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  value = tf_example_pb2.Example.FromString(record).features.feature["label"]
  return value.int64_list.value[0]


def read_labels(builder, split):
  """All labels of `split` (an int64 array, in file order)."""
  total = builder.info.splits[split].num_examples
  labels, last_log = [], time.monotonic()
  for batch in _record_batches(builder, split):
    labels.extend(_label(r) for r in batch)
    if time.monotonic() - last_log > _LOG_SECONDS:
      logging.info("Counting labels of %s:%s: %d / %d", builder.info.full_name, split,
                   len(labels), total)
      last_log = time.monotonic()
  if len(labels) != total:
    raise _error(f"Read {len(labels)} labels from {builder.info.full_name}:{split}, "
                 f"its metadata says {total} examples: the files are incomplete.")
  return np.asarray(labels, np.int64)


def label_counts(name, split="train", data_dir=None):
  """(per-class counts, class names, full dataset name) of a prepared split."""
  builder = load_builder(name, data_dir)
  label = label_feature(builder)
  if split not in builder.info.splits:  # Whole splits only: slices have no files.
    raise _error(f"TFDS dataset {builder.info.full_name} has no split {split!r}; "
                 f"it has {sorted(builder.info.splits)}.")
  labels = read_labels(builder, split)
  if labels.size and (labels.min() < 0 or labels.max() >= label.num_classes):
    raise _error(f"{builder.info.full_name}:{split} has labels outside 0 … "
                 f"{label.num_classes - 1}.")
  counts = np.bincount(labels, minlength=label.num_classes)
  return counts, list(label.names), builder.info.full_name
