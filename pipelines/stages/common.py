"""Small helpers the stages share: hashing inputs, config ↔ plain dicts."""
import pathlib

import ml_collections

from synthfactory.datasets import manifest as manifest_lib
from synthfactory.datasets import shards as shards_lib


def plain(config):
  """A ConfigDict (or plain value) as JSON-able Python, for input hashes."""
  if isinstance(config, ml_collections.ConfigDict):
    return {k: plain(v) for k, v in config.items()}
  if isinstance(config, (list, tuple)):
    return [plain(v) for v in config]
  return config


def path_sha256(path):
  """SHA-256 of a file, or of a directory's files and names (a checkpoint's identity,
  the same as the generation manifest records)."""
  path = pathlib.Path(path)
  if path.is_dir():
    return manifest_lib.directory_sha256(path)
  return shards_lib.file_sha256(path)
