"""The evaluation job on tiny real TFDS datasets (ArrayRecord) with a tiny extractor."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

from absl import flags
from array_record.python import array_record_module
import numpy as np
import pytest
import tensorflow_datasets as tfds

from synthfactory.evaluation import evaluate
from synthfactory.evaluation import feature_extractor
from synthfactory.evaluation import image_sets
from synthfactory.evaluation import reference_stats

# A fixed random projection: fast, deterministic, and has logits for an IS.
_TINY_MODULE = textwrap.dedent("""
    import numpy as np
    from synthfactory.evaluation import feature_extractor

    def make(arg=""):
      rng = np.random.default_rng(0)
      w, v = rng.standard_normal((28 * 28, 8)) / 28, rng.standard_normal((8, 5))
      def fn(images):
        features = np.tanh(images.reshape(len(images), -1) @ w)
        return {"features": features, "logits": 3 * features @ v}
      return feature_extractor.FeatureExtractor("tiny", fn, batch_size=16,
                                                identity=arg or "tiny-v1")

    feature_extractor.register("tiny", make)
""")
_tiny = {}
exec(_TINY_MODULE, _tiny)  # The same extractor in-process and in the CLI test.
TINY = _tiny["make"]()


def write_dataset(data_dir, name, splits, shape=(28, 28, 1)):
  """A prepared TFDS dataset in ArrayRecord format (DESIGN §4's recipe)."""
  features = tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=shape),
      "label": tfds.features.ClassLabel(num_classes=10)})
  out = pathlib.Path(data_dir) / name / "1.0.0"
  out.mkdir(parents=True, exist_ok=True)
  infos = []
  for split, images in splits.items():
    writer = array_record_module.ArrayRecordWriter(
        str(out / f"{name}-{split}.array_record-00000-of-00001"), "group_size:1")
    for i, image in enumerate(images):
      writer.write(features.serialize_example({"image": image, "label": i % 10}))
    writer.close()
    infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[len(images)],
                                     num_bytes=0))
  tfds.folder_dataset.write_metadata(data_dir=str(out), features=features,
                                     split_infos=infos, check_data=False)
  return out


def _blobs(n, seed):
  """Smooth bright blobs at random places: a 'real' distribution."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:28, :28]
  cy, cx, r = rng.uniform(8, 20, (3, n, 1, 1)) * [[[[1]]], [[[1]]], [[[0.3]]]]
  images = 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2 + 4))
  return images.astype(np.uint8)[..., None]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  noise = np.random.default_rng(9).integers(0, 256, (40, 28, 28, 1), dtype=np.uint8)
  write_dataset(root, "tiny_real", {"train": _blobs(48, 0), "test": _blobs(40, 1)})
  write_dataset(root, "tiny_noise", {"train": noise})
  return root


def _open(spec, data_dir):
  return image_sets.open_image_set(spec, data_dir=str(data_dir))


def test_self_distance_is_zero_and_a_different_set_is_far(data_dir, tmp_path):
  ref = _open("tiny_real:test", data_dir)
  same = evaluate.evaluate(_open("tiny_real:test", data_dir), ref, TINY,
                           cache_dir=tmp_path, pr_samples=40)
  assert same["metric_name"] == "FD-tiny"
  assert same["metrics"]["FD-tiny"] < 1e-6
  assert same["metrics"]["precision"] == same["metrics"]["recall"] == 1.0
  assert same["counts"] == {"generated": 40, "reference": 40}
  assert same["generated"]["content_sha256"] == same["reference"]["content_sha256"]
  close = evaluate.evaluate(_open("tiny_real:train", data_dir), ref, TINY, tmp_path,
                            pr_samples=40)["metrics"]
  far = evaluate.evaluate(_open("tiny_noise", data_dir), ref, TINY, tmp_path,
                          pr_samples=40)["metrics"]
  assert 10 * close["FD-tiny"] < far["FD-tiny"]
  assert far["precision"] < close["precision"]
  assert {"IS-tiny", "IS-tiny_std"} <= set(far)


def test_reference_cache_hit_stale_and_corrupt(tmp_path):
  root = tmp_path / "tfds"
  write_dataset(root, "cached_ds", {"test": _blobs(20, 2)})
  run = lambda extractor=TINY: reference_stats.cached(
      _open("cached_ds:test", root), extractor, tmp_path / "cache", sample_size=10)
  first = run()
  assert first.info["cache"].startswith("not cached; computed")
  second = run()
  assert second.info["cache"].startswith("hit")
  np.testing.assert_array_equal(second.stats.cov, first.stats.cov)
  np.testing.assert_array_equal(second.sample, first.sample)
  # Another extractor identity (e.g. new weights) must not reuse it.
  other = feature_extractor.FeatureExtractor("tiny", TINY.fn, 16, identity="tiny-v2")
  assert run(other).info["cache"].startswith("stale")
  assert run(other).info["cache"].startswith("hit")
  # The images change (one pixel): stale.
  changed = _blobs(20, 2)
  changed[3, 0, 0] ^= 1
  write_dataset(root, "cached_ds", {"test": changed})
  assert run(other).info["cache"].startswith("stale")
  # The cache file is damaged: recomputed, not trusted.
  (npz,) = (tmp_path / "cache").glob("*.npz")
  npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
  assert run(other).info["cache"].startswith("cache file modified")
  no_identity = feature_extractor.FeatureExtractor("tiny", TINY.fn, 16)
  assert run(no_identity).info["cache"].startswith("off")


def test_subsets_are_fixed_random_samples():
  a = reference_stats.select_indices(1000, 100)
  np.testing.assert_array_equal(a, reference_stats.select_indices(1000, 100))
  assert len(np.unique(a)) == 100 and (np.diff(a) > 0).all() and a.max() > 500
  np.testing.assert_array_equal(reference_stats.select_indices(5, 0), np.arange(5))


@pytest.mark.parametrize("spec, expected", [
    ("fashion_mnist", ("fashion_mnist", "train")),
    ("fashion_mnist:test", ("fashion_mnist", "test")),
    ("imagenet2012:5.1.0", ("imagenet2012:5.1.0", "train")),
    ("imagenet2012:5.1.0:validation", ("imagenet2012:5.1.0", "validation")),
    ("synthetic_fashion_mnist/28x_1x:train[:1000]",
     ("synthetic_fashion_mnist/28x_1x", "train[:1000]")),
])
def test_parse_spec(spec, expected):
  assert image_sets.parse_spec(spec, "train") == expected


def test_dataset_errors(data_dir, tmp_path):
  with pytest.raises(image_sets.ImageSetError, match="'no_such_ds' not found"):
    _open("no_such_ds:test", data_dir)
  with pytest.raises(image_sets.ImageSetError,
                     match=r"no split 'validation'; its splits are \['test', 'train'\]"):
    _open("tiny_real:validation", data_dir)
  with pytest.raises(image_sets.ImageSetError, match="no image feature 'img'"):
    image_sets.open_image_set("tiny_real:test", data_dir=str(data_dir), image_key="img")
  with pytest.raises(image_sets.ImageSetError, match="Pass the version folder, e.g."):
    _open(str(data_dir / "tiny_real"), data_dir)


def test_directory_sets_and_resizing(data_dir, tmp_path):
  folder = data_dir / "tiny_real" / "1.0.0"
  image_set = _open(f"{folder}:test", data_dir)
  assert len(image_set) == 40 and image_set.description.endswith("1.0.0:test")
  encoded = image_set.encoded([0, 5])
  np.testing.assert_array_equal(image_set.decode(encoded), _blobs(40, 1)[[0, 5]])
  assert image_set.decode(encoded, image_size=16).shape == (2, 16, 16, 1)
  write_dataset(tmp_path, "varying", {"train": [np.zeros((20, 30, 3), np.uint8),
                                                np.zeros((31, 17, 3), np.uint8)]},
                shape=(None, None, 3))
  varying = _open("varying", tmp_path)
  with pytest.raises(image_sets.ImageSetError, match="vary in size; pass an image size"):
    varying.decode(varying.encoded([0, 1]))
  assert varying.decode(varying.encoded([0, 1]), 12).shape == (2, 12, 12, 3)


def test_extractor_registry_and_checks():
  with pytest.raises(ValueError, match=r"Unknown feature extractor 'nope'.*inception"):
    feature_extractor.create("nope:x")
  with pytest.raises(ValueError, match="needs its weight file"):
    feature_extractor.create("inception")
  with pytest.raises(ValueError, match="lowercase"):
    feature_extractor.FeatureExtractor("Bad Name", TINY.fn)
  bad = feature_extractor.FeatureExtractor("nan", lambda x: np.full((len(x), 3), np.nan),
                                           batch_size=4)
  with pytest.raises(ValueError, match="NaN"):
    bad(np.zeros((2, 28, 28, 1), np.uint8))
  with pytest.raises(ValueError, match="1 ≤ B ≤ 16"):
    TINY(np.zeros((17, 28, 28, 1), np.uint8))
  assert TINY.metric_name == "FD-tiny" and TINY.score_name == "IS-tiny"
  assert feature_extractor.FeatureExtractor("inception", TINY.fn,
                                            is_fid_network=True).metric_name == "FID"


def test_cli_writes_report(data_dir, tmp_path):
  (tmp_path / "tiny_plugin.py").write_text(_TINY_MODULE)
  env = {**os.environ, "PYTHONPATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3",
         "JAX_PLATFORMS": "cpu"}
  done = subprocess.run(
      [sys.executable, "-m", "synthfactory.evaluation.evaluate", "--extractor=tiny",
       "--extractor_imports=tiny_plugin", f"--data_dir={data_dir}",
       f"--cache_dir={tmp_path / 'cache'}", f"--output={tmp_path / 'report.json'}",
       "--generated=tiny_real:train", "--reference=tiny_real:test", "--pr_samples=20",
       "--is_splits=2"], capture_output=True, text=True, env=env, timeout=300)
  assert done.returncode == 0, done.stderr
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["metric_name"] == "FD-tiny"
  assert set(report["metrics"]) == {"FD-tiny", "IS-tiny", "IS-tiny_std", "precision",
                                    "recall"}
  assert report["counts"] == {"generated": 48, "reference": 40}
  assert report["extractor"]["identity"] == "tiny-v1"
  assert report["reference"]["cache"].startswith("not cached")
  assert "--extractor=tiny" in report["provenance"]["command"]


def test_main_fails_with_one_line(data_dir, tmp_path):
  feature_extractor.register("tiny", _tiny["make"])
  argv = ["evaluate", "--generated=tiny_real:nope", "--reference=tiny_real:test",
          "--extractor=tiny", f"--data_dir={data_dir}", f"--output={tmp_path / 'r.json'}"]
  flags.FLAGS(argv)
  try:
    with pytest.raises(SystemExit, match=r"^evaluate: 'tiny_real' has no split 'nope'"):
      evaluate.main(argv[:1])
  finally:
    flags.FLAGS.unparse_flags()
  assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_inception_end_to_end(data_dir, tmp_path):
  """The FID Inception (random weights) through the whole job, on a split slice."""
  from synthfactory.evaluation import inception
  rng = np.random.default_rng(0)
  flat = {k: (rng.uniform(0.5, 1.5, s) if k.endswith(("var", "scale"))
              else rng.standard_normal(s) / np.sqrt(np.prod(s[:-1]) if len(s) > 1 else 10))
          for k, s in inception.expected_shapes().items()}
  inception.save_variables(tmp_path / "w.npz", flat, {"reference_fid_weights": True})
  extractor = feature_extractor.create(f"inception:{tmp_path / 'w.npz'}", batch_size=8)
  ref = _open("tiny_real:test[:16]", data_dir)
  report = evaluate.evaluate(_open("tiny_real:test[:16]", data_dir), ref, extractor,
                             tmp_path, pr_samples=16, is_splits=2)
  assert report["metric_name"] == "FID" and report["extractor"]["feature_dim"] == 2048
  assert report["metrics"]["FID"] < 1e-6
  assert {"IS", "IS_std", "precision", "recall"} <= set(report["metrics"])
  assert report["counts"] == {"generated": 16, "reference": 16}
