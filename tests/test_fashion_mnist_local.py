"""fashion_mnist_local: local idx files become a TFDS dataset read by data_source."""
import gzip
import struct

import numpy as np
import tensorflow_datasets as tfds

from synthfactory.datasets import fashion_mnist
from synthfactory.tfds_builders.fashion_mnist_local import (
    fashion_mnist_local_dataset_builder as builder_lib)


def _write_idx(path, array, magic):
  header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d)
                                               for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _fake_idx_folder(folder, sizes):
  rng = np.random.default_rng(0)
  data = {}
  for split, prefix in (("train", "train"), ("test", "t10k")):
    images = rng.integers(0, 256, (sizes[split], 28, 28), dtype=np.uint8)
    labels = np.arange(sizes[split]) % 10
    _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 0x803)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 0x801)
    data[split] = (images[..., None], labels)
  return data


def test_builds_array_record_readable_by_data_source(tmp_path):
  manual = tmp_path / "idx"
  manual.mkdir()
  data = _fake_idx_folder(manual, {"train": 23, "test": 11})
  builder = builder_lib.Builder(data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  assert builder.info.features["label"].names == list(fashion_mnist.CLASS_NAMES)
  for split, (images, labels) in data.items():
    source = tfds.data_source("fashion_mnist_local", split=split,
                              data_dir=str(tmp_path / "tfds"))
    assert len(source) == len(labels)
    # Records are shuffled by key: compare the multisets of (label, image bytes).
    got = sorted((int(ex["label"]), ex["image"].tobytes())
                 for ex in (source[i] for i in range(len(source))))
    want = sorted((int(l), im.tobytes()) for im, l in zip(images, labels))
    assert got == want
