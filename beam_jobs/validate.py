"""Checks a generated dataset folder against its manifest and class plan.

  python -m synthfactory.beam_jobs.validate --data_dir=<folder or gs://bucket/path>

Reads every record of every shard (a damaged ArrayRecord chunk shows only when read),
compares SHA-256, record and per-class counts with the manifest and the plan, and
decodes a sample of records. Prints each problem; exits 1 if there is any.
"""
import sys

from absl import app
from absl import flags

from synthfactory.datasets import manifest
from synthfactory.datasets import storage

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset folder (local or gs://).",
                                required=True)
_DECODE = flags.DEFINE_integer("decode_sample", 8, "Records decoded per shard.")


def main(argv):
  del argv
  try:
    problems = manifest.problems(_DATA_DIR.value, decode_sample=_DECODE.value)
  except storage.StorageError as e:
    sys.exit(f"validate: {e}")  # Bucket, permission or endpoint: one clear line.
  for p in problems:
    print(f"PROBLEM: {p}")
  if problems:
    sys.exit(f"validate: {_DATA_DIR.value} has {len(problems)} problem(s).")
  print(f"validate: {_DATA_DIR.value} is complete and matches its manifest.")


if __name__ == "__main__":
  app.run(main)
