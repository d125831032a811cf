"""Shard layout (pure, complete, class-mixing), TFDS naming, atomic idempotent writes."""
import threading

import numpy as np
import pytest

from synthfactory.datasets import class_plan
from synthfactory.datasets import shards


@pytest.mark.parametrize("multiplier,num_shards", [(1, 1), (1, 7), (0.37, 16), (3, 5)])
def test_layout_covers_every_item_once(multiplier, num_shards):
  plan = class_plan.from_counts([13, 1, 0, 40, 7], multiplier, source="toy")
  parts = [shards.shard_items(plan, num_shards, k) for k in range(num_shards)]
  labels = np.concatenate([p[0] for p in parts])
  indices = np.concatenate([p[1] for p in parts])
  plan.check(labels, indices)  # Exact quotas, no duplicates, indices in range.
  assert [len(p[0]) for p in parts] == shards.shard_sizes(plan, num_shards).tolist()
  assert np.ptp(shards.shard_sizes(plan, num_shards)) <= 1


def test_layout_is_a_pure_function_and_mixes_classes():
  plan = class_plan.imagenet2012(0.1)
  a = shards.shard_items(plan, 64, 5)
  b = shards.shard_items(plan, 64, 5)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert len(np.unique(a[0])) > 900                 # ~every class in every shard,
  assert (np.diff(a[0]) != 0).mean() > 0.9          # and interleaved, not sorted.


def test_bad_layout_arguments():
  plan = class_plan.uniform(2, 3)
  with pytest.raises(shards.ShardError, match="num_shards"):
    shards.shard_sizes(plan, 0)
  with pytest.raises(shards.ShardError, match="outside"):
    shards.shard_items(plan, 2, 2)


def test_tfds_file_naming():
  assert (shards.shard_filename("synthetic_imagenet", "train", 3, 16)
          == "synthetic_imagenet-train.array_record-00003-of-00016")


def _records(n):
  feats = shards.features(["a", "b"], (4, 4, 1))
  rng = np.random.default_rng(0)
  for i in range(n):
    img = rng.integers(0, 256, (4, 4, 1), dtype=np.uint8)
    yield shards.serialize(feats, {"image": shards.encode_image(img), "label": i % 2,
                                   "class_id": "ab"[i % 2], "index": i, "seed": 0})


def test_record_round_trip_png_and_jpeg():
  for encoding in shards.ENCODINGS:
    feats = shards.features(["a", "b"], (8, 8, 3), encoding)
    img = np.arange(192, dtype=np.uint8).reshape(8, 8, 3)
    rec = shards.serialize(feats, {
        "image": shards.encode_image(img, encoding, jpeg_quality=90), "label": 1,
        "class_id": "b", "index": 7, "seed": 3})
    ex = feats.deserialize_example_np(rec)
    assert (ex["label"], ex["index"], ex["seed"]) == (1, 7, 3)
    if encoding == "png":
      np.testing.assert_array_equal(ex["image"], img)


def test_repeated_and_concurrent_writes_leave_one_correct_shard(tmp_path):
  path = tmp_path / shards.shard_filename("d", "train", 0, 1)
  first = shards.write_atomic(path, _records(20))
  # A retried bundle and two racing workers write the same shard again.
  threads = [threading.Thread(target=shards.write_atomic, args=(path, _records(20)))
             for _ in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert shards.write_atomic(path, _records(20)) == first
  assert [p.name for p in tmp_path.iterdir()] == [path.name]
  assert len(shards.read_records(path)) == 20


def test_failed_write_leaves_nothing(tmp_path):
  def failing():
    yield from _records(3)
    raise RuntimeError("worker died")

  path = tmp_path / "shard"
  with pytest.raises(RuntimeError, match="worker died"):
    shards.write_atomic(path, failing())
  assert list(tmp_path.iterdir()) == []
