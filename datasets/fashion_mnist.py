"""Fashion-MNIST from its four idx files (gzipped or not).

Debian ships them in the package `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist); the FASHION_MNIST_DIR environment variable points
elsewhere. The idx format is a big-endian header (magic number, then one uint32 per
dimension) followed by raw uint8 data.
"""
import gzip
import os
import pathlib
import zlib

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "FASHION_MNIST_DIR"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28, 1)

_PREFIX = {"train": "train", "test": "t10k"}
# idx magic: two zero bytes, the type code (0x08 = uint8), the number of dimensions.
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801


class FashionMnistError(ValueError):
  """The Fashion-MNIST files are missing or malformed."""


def default_dir():
  return os.environ.get(ENV_VAR) or DEFAULT_DIR


def load(split="train", data_dir=None):
  """Returns (images uint8 (N, 28, 28, 1), labels int32 (N,)) of `split`."""
  if split not in _PREFIX:
    raise FashionMnistError(f"Unknown Fashion-MNIST split {split!r}; choose one of "
                            f"{sorted(_PREFIX)}.")
  data_dir = pathlib.Path(data_dir or default_dir())
  images = read_idx(_find(data_dir, f"{_PREFIX[split]}-images-idx3-ubyte"),
                    _IMAGES_MAGIC)
  labels = read_idx(_find(data_dir, f"{_PREFIX[split]}-labels-idx1-ubyte"),
                    _LABELS_MAGIC)
  if images.shape[1:] != IMAGE_SHAPE[:2]:
    raise FashionMnistError(f"Fashion-MNIST images in {data_dir} are "
                            f"{images.shape[1:]}, expected {IMAGE_SHAPE[:2]}.")
  if len(images) != len(labels):
    raise FashionMnistError(f"Fashion-MNIST {split} in {data_dir} has {len(images)} "
                            f"images but {len(labels)} labels; re-download the files.")
  if labels.size and labels.max() >= NUM_CLASSES:
    raise FashionMnistError(f"Fashion-MNIST {split} labels in {data_dir} go up to "
                            f"{labels.max()}, expected < {NUM_CLASSES}.")
  return images[..., None], labels.astype(np.int32)


def read_idx(path, magic):
  """Reads one idx file whose header must start with `magic`."""
  path = pathlib.Path(path)
  try:
    data = path.read_bytes()
    if path.suffix == ".gz":
      data = gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise FashionMnistError(
        f"Cannot read {path}: {e}. If the file is damaged, reinstall "
        f"`dataset-fashion-mnist` or re-download it.") from e
  ndim = magic & 0xFF
  header = 4 * (1 + ndim)
  if len(data) < header or int.from_bytes(data[:4], "big") != magic:
    raise FashionMnistError(
        f"{path} is not an idx file with magic number {magic:#010x} "
        f"(got {data[:4].hex() or 'an empty file'}).")
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  if len(data) != header + int(np.prod(shape)):
    raise FashionMnistError(f"{path} holds {len(data) - header} bytes of data but its "
                            f"header promises shape {shape}; the file is truncated or damaged.")
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find(data_dir, stem):
  for name in (stem + ".gz", stem):
    if (data_dir / name).is_file():
      return data_dir / name
  raise FashionMnistError(
      f"Fashion-MNIST file {stem}(.gz) not found in {data_dir}. Install it with "
      f"`sudo apt-get install dataset-fashion-mnist` (or `make data`), or put the four "
      f"idx files in a folder and set {ENV_VAR}=<folder>.")
