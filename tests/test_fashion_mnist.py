"""The Fashion-MNIST idx reader: real files (FASHION_MNIST_DIR) and hand-made ones."""
import gzip

import numpy as np
import pytest

from synthfactory.datasets import fashion_mnist


def _write_idx(path, array, magic):
  header = magic.to_bytes(4, "big") + b"".join(
      d.to_bytes(4, "big") for d in array.shape)
  data = header + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _write_split(folder, images, labels, split="train", suffix=".gz"):
  prefix = {"train": "train", "test": "t10k"}[split]
  _write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, 0x803)
  _write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 0x801)


def test_real_training_set():
  images, labels = fashion_mnist.load("train")
  assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
  assert labels.shape == (60000,) and labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
  assert len(fashion_mnist.CLASS_NAMES) == 10
  assert fashion_mnist.CLASS_NAMES[labels[0]] == "Ankle boot"  # Its first image.
  assert fashion_mnist.load("test")[0].shape == (10000, 28, 28, 1)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_parses_handmade_idx_files(tmp_path, suffix):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 28, 28), np.uint8)
  labels = np.array([0, 9, 3, 3, 1], np.uint8)
  _write_split(tmp_path, images, labels, "test", suffix)
  got_images, got_labels = fashion_mnist.load("test", tmp_path)
  np.testing.assert_array_equal(got_images[..., 0], images)
  np.testing.assert_array_equal(got_labels, labels)


def test_env_var_names_the_folder(tmp_path, monkeypatch):
  _write_split(tmp_path, np.zeros((2, 28, 28)), np.zeros(2))
  monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path))
  assert fashion_mnist.load()[0].shape == (2, 28, 28, 1)


def test_missing_files_name_the_package_and_env_var(tmp_path):
  with pytest.raises(fashion_mnist.FashionMnistError,
                     match="dataset-fashion-mnist.*FASHION_MNIST_DIR"):
    fashion_mnist.load("train", tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x00\x00\x08\x05" + b[4:], "magic number"),  # Wrong magic.
    (lambda b: b[:-100], "truncated"),
    (lambda b: b"", "empty file"),
])
def test_corrupt_files_are_one_clear_error(tmp_path, damage, message):
  _write_split(tmp_path, np.zeros((3, 28, 28)), np.zeros(3), suffix="")
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(damage(path.read_bytes()))
  with pytest.raises(fashion_mnist.FashionMnistError, match=message):
    fashion_mnist.load("train", tmp_path)


def test_broken_gzip_is_one_clear_error(tmp_path):
  _write_split(tmp_path, np.zeros((3, 28, 28)), np.zeros(3))
  path = tmp_path / "train-labels-idx1-ubyte.gz"
  path.write_bytes(path.read_bytes()[:15])
  with pytest.raises(fashion_mnist.FashionMnistError, match="Cannot read.*damaged"):
    fashion_mnist.load("train", tmp_path)


def test_mismatched_counts_and_bad_labels(tmp_path):
  _write_split(tmp_path, np.zeros((3, 28, 28)), np.zeros(2))
  with pytest.raises(fashion_mnist.FashionMnistError, match="3 images but 2 labels"):
    fashion_mnist.load("train", tmp_path)
  _write_split(tmp_path, np.zeros((2, 28, 28)), np.array([1, 12]))
  with pytest.raises(fashion_mnist.FashionMnistError, match="up to 12"):
    fashion_mnist.load("train", tmp_path)
  with pytest.raises(fashion_mnist.FashionMnistError, match="Unknown"):
    fashion_mnist.load("validation", tmp_path)
