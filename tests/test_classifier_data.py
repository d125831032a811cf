"""Classifier input pipeline: specs, TFDS and idx sources, crops, mixtures (exact
ratios, deterministic and resumable order), label-space errors, device augmentations."""
import io

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageFilter
import PIL.ImageOps
import pytest

from synthfactory.datasets import fashion_mnist
from synthfactory.training import classifier_augment as augment
from synthfactory.training import classifier_data as data_lib

NONE = data_lib.Crop("none", 28)


def make_fake_tfds_dataset(root, name, n=64, shape=(28, 28, 1), class_names=None,
                           encoding="png", splits=("train", "test"), seed=0):
  """A small TFDS ArrayRecord dataset of random images: (folder, {split: (images,
  labels)}). Variable-size images when shape has None."""
  rng = np.random.default_rng(seed)
  names = list(class_names or fashion_mnist.CLASS_NAMES)
  contents = {}
  for split in splits:
    sizes = [tuple(int(rng.integers(40, 90)) if d is None else d for d in shape)
             for _ in range(n)]
    images = [rng.integers(0, 256, s, np.uint8) for s in sizes]
    contents[split] = (images, rng.integers(0, len(names), n))
  folder = data_lib.write_tfds_dataset(root, name, contents, names, encoding=encoding,
                                       shards=2)
  return folder, contents


@pytest.fixture(scope="module")
def tfds_root(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def synthetic(tfds_root):
  """A 28 px grey 'synthetic Fashion-MNIST' with the real class names."""
  return make_fake_tfds_dataset(tfds_root, "fake_synthetic", n=96)


@pytest.fixture(scope="module")
def real():
  return data_lib.open_source("fashion_mnist_idx:train[:200]")


def _data(**kw):
  base = dict(real="", synthetic="", mix="real", synthetic_fraction=0.0, eval="",
              data_dir="", image_size=28, train_crop="none", eval_crop="none",
              crop_fraction=0.875, cache_mb=64)
  return ml_collections.ConfigDict({**base, **kw})


# --- specs and sources ----------------------------------------------------------------


@pytest.mark.parametrize("spec, expected", [
    ("fashion_mnist_idx:train", ("fashion_mnist_idx", "train")),
    ("synthetic_imagenet/1024x_1x:train", ("synthetic_imagenet/1024x_1x", "train")),
    ("imagenet2012:train[:99%]", ("imagenet2012", "train[:99%]")),
    ("gs://bucket/ds/1.0.0:validation[10:20]", ("gs://bucket/ds/1.0.0",
                                                "validation[10:20]")),
])
def test_parse_spec(spec, expected):
  assert data_lib.parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["imagenet2012", "imagenet2012:", ":train", ""])
def test_spec_without_split_is_a_clear_error(spec):
  with pytest.raises(data_lib.DataError, match="is not 'name:split'"):
    data_lib.parse_spec(spec)


def test_idx_source_and_its_slices(real):
  full = data_lib.open_source("fashion_mnist_idx:test")
  assert len(full) == 10_000 and full.class_names == fashion_mnist.CLASS_NAMES
  assert len(real) == 200 and real.num_classes == 10 and real.channels == 1
  tail = data_lib.open_source("fashion_mnist_idx:test[90%:]")
  np.testing.assert_array_equal(tail.images, full.images[9000:])
  with pytest.raises(data_lib.DataError, match="Unknown Fashion-MNIST split"):
    data_lib.open_source("fashion_mnist_idx:validation")
  with pytest.raises(data_lib.DataError, match="cannot read the split"):
    data_lib.open_source("fashion_mnist_idx:train[a:b]")


def test_tfds_by_name_and_by_folder_read_the_same(synthetic, tfds_root):
  folder, contents = synthetic
  images, labels = contents["train"]
  by_folder = data_lib.open_source(f"{folder}:train")  # Decoded into memory.
  by_name = data_lib.open_source("fake_synthetic:train", str(tfds_root), cache_mb=0)
  assert isinstance(by_folder, data_lib.ArraySource)
  assert isinstance(by_name, data_lib.RecordSource)
  assert len(by_folder) == len(by_name) == 96
  assert by_name.class_names == fashion_mnist.CLASS_NAMES and by_name.channels == 1
  idx = np.array([5, 0, 95, 48])  # Across both shards.
  for source in (by_folder, by_name):
    got_images, got_labels = source.read(idx, NONE, None)
    np.testing.assert_array_equal(got_images, np.stack([images[i] for i in idx]))
    np.testing.assert_array_equal(got_labels, labels[idx])
  assert len(data_lib.open_source(f"{folder}:train[:10]")) == 10


def test_missing_dataset_split_or_features_are_clear_errors(synthetic, tfds_root):
  with pytest.raises(data_lib.DataError, match="'no_such_dataset' not found.*"
                     "tfds.list_builders"):
    data_lib.open_source("no_such_dataset:train", str(tfds_root))
  with pytest.raises(data_lib.DataError, match="has no split 'validation'.*'train'"):
    data_lib.open_source("fake_synthetic:validation", str(tfds_root))
  with pytest.raises(data_lib.DataError, match="tfds build mnist --file_format="
                     "array_record"):
    data_lib.open_source("mnist:train", str(tfds_root / "empty"))


def test_label_spaces_must_match(synthetic, real, tfds_root):
  five, _ = make_fake_tfds_dataset(tfds_root, "five_classes", n=8,
                                   class_names=[f"c{i}" for i in range(5)])
  renamed, _ = make_fake_tfds_dataset(
      tfds_root, "renamed", n=8, class_names=("Top",) + fashion_mnist.CLASS_NAMES[1:])
  rgb, _ = make_fake_tfds_dataset(tfds_root, "rgb", n=8, shape=(28, 28, 3))
  mix = lambda spec: data_lib.TrainData(
      {"real": real, "synthetic": data_lib.open_source(f"{spec}:train")}, "concat", 8,
      0, NONE)
  with pytest.raises(data_lib.DataError, match="has 10 classes.*has 5"):
    mix(five)
  with pytest.raises(data_lib.DataError,
                     match="class 0 is 'T-shirt/top' in .* but 'Top' in"):
    mix(renamed)
  with pytest.raises(data_lib.DataError, match="1-channel images but .* has 3"):
    mix(rgb)
  numbered, _ = make_fake_tfds_dataset(tfds_root, "numbered", n=8,
                                       class_names=[str(i) for i in range(10)])
  assert mix(numbered).num_classes == 10  # Unnamed classes: only the count must match.


def test_mix_needs_its_sources(real):
  with pytest.raises(data_lib.DataError, match="trains on real and synthetic data but "
                     "real was given"):
    data_lib.TrainData({"real": real}, "concat", 8, 0, NONE)
  with pytest.raises(data_lib.DataError, match="Unknown data.mix"):
    data_lib.TrainData({"real": real}, "both", 8, 0, NONE)
  with pytest.raises(data_lib.DataError, match="pick a fraction of the form k/32"):
    data_lib.TrainData({"real": real, "synthetic": real}, "ratio", 32, 0, NONE, 0.3)
  with pytest.raises(data_lib.DataError, match="fewer than one batch"):
    data_lib.TrainData({"real": real}, "real", 256, 0, NONE)


# --- mixtures and order ---------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_ratio_mixture_is_exact_in_every_batch(real, synthetic, fraction):
  syn = data_lib.open_source(f"{synthetic[0]}:train")
  train = data_lib.TrainData({"real": real, "synthetic": syn}, "ratio", 32, 3, NONE,
                             fraction)
  for step in range(40):  # Several epochs of both sources.
    roles, indices = train.slots(step)
    assert (roles == "synthetic").sum() == 32 * fraction
  assert train.epoch_size == 200 / (1 - fraction)
  # Each stream is a sequence of permutations: any 96 consecutive synthetic slots
  # (one epoch of that source) hold every synthetic example once.
  k = int(32 * fraction)
  order = [train.slots(s)[1][train.slots(s)[0] == "synthetic"] for s in range(40)]
  # Within-batch shuffling hides the stream order, so compare sets per epoch.
  stream = data_lib.stream(96, 3, 2, 0, 40 * k)
  np.testing.assert_array_equal(np.sort(np.concatenate(order)), np.sort(stream))
  assert sorted(stream[:96]) == list(range(96))


def test_concat_reads_every_example_once_an_epoch(real, synthetic):
  syn = data_lib.open_source(f"{synthetic[0]}:train")
  train = data_lib.TrainData({"real": real, "synthetic": syn}, "concat", 37, 0, NONE)
  assert train.epoch_size == 296
  seen = [train.slots(s) for s in range(8)]  # 8 x 37 = 296: exactly one epoch.
  roles = np.concatenate([r for r, _ in seen])
  indices = np.concatenate([i for _, i in seen])
  assert (roles == "real").sum() == 200 and (roles == "synthetic").sum() == 96
  assert sorted(indices[roles == "real"]) == list(range(200))
  assert sorted(indices[roles == "synthetic"]) == list(range(96))
  batch = train.batch(3)
  assert batch["image"].shape == (37, 28, 28, 1) and batch["image"].dtype == np.uint8
  r, i = train.slots(3)
  np.testing.assert_array_equal(batch["synthetic"], r == "synthetic")
  np.testing.assert_array_equal(batch["label"][r == "real"],
                                real.labels[i[r == "real"]])


def test_batches_are_a_pure_function_of_seed_and_step(real, synthetic):
  syn = data_lib.open_source(f"{synthetic[0]}:train")
  crop = data_lib.Crop("inception", 20)
  make = lambda seed: data_lib.TrainData({"real": real, "synthetic": syn}, "ratio", 16,
                                         seed, crop, 0.5)
  a, b = make(0), make(0)
  late = b.batch(9)  # Out of order, as after a resume.
  stream = list(a.batches(5, 10))
  for key in ("image", "label", "synthetic"):
    np.testing.assert_array_equal(stream[4][key], late[key])
    np.testing.assert_array_equal(stream[0][key], b.batch(5)[key])
  assert not np.array_equal(make(1).batch(5)["image"], stream[0]["image"])
  assert not np.array_equal(a.batch(6)["image"], stream[0]["image"])


# --- crops and decoding ---------------------------------------------------------------


def test_center_crop_is_resize_256_then_crop_224():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (320, 400, 3), np.uint8)
  image = np.asarray(PIL.Image.fromarray(image).filter(
      PIL.ImageFilter.GaussianBlur(4)))  # Smooth, so resampling paths agree.
  source = data_lib.ArraySource("mem", image[None], np.zeros(1, np.int32), 2)
  got, _ = source.read(np.array([0]), data_lib.Crop("center", 224, 0.875), None)
  resized = PIL.Image.fromarray(image).resize((320, 256), PIL.Image.BILINEAR)
  want = np.asarray(resized)[16:240, 48:272]
  assert got.shape == (1, 224, 224, 3)
  assert np.abs(got[0].astype(float) - want).mean() < 2.0


def test_inception_crops_stay_inside_and_cover_the_scale_range():
  crop = data_lib.Crop("inception", 32)
  params = crop.params(np.random.default_rng(0), 2000)
  boxes = np.array([crop.box(300, 500, p) for p in params])
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= 300).all() and (left + w <= 500).all()
  area = h * w / (300 * 500)
  assert area.min() < 0.1 and area.max() > 0.75  # At most 300x400 fits the ratios.
  assert 0.7 < (w / h).min() and (w / h).max() < 1.4
  # A sliver the ratio range cannot fit: the central crop at the nearest ratio.
  assert crop.box(10, 1000, params[0]) == (0.0, (1000 - 13) / 2, 10, 13)


def test_jpeg_sources_decode_crop_and_resize(tfds_root):
  folder, contents = make_fake_tfds_dataset(tfds_root, "jpegs", n=12,
                                            shape=(None, None, 3), encoding="jpeg")
  source = data_lib.open_source(f"{folder}:train")
  assert isinstance(source, data_lib.RecordSource) and source.channels == 3
  for kind in ("center", "inception"):
    images, labels = source.read(np.arange(12), data_lib.Crop(kind, 24),
                                 np.random.default_rng(0))
    assert images.shape == (12, 24, 24, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, contents["train"][1])
  with pytest.raises(data_lib.DataError, match="set data.train_crop/eval_crop"):
    source.read(np.arange(2), data_lib.Crop("none", 24), None)


def test_large_jpegs_decode_at_reduced_scale():
  image = np.zeros((1024, 1024, 3), np.uint8)
  image[:, 512:] = 255
  buf = io.BytesIO()
  PIL.Image.fromarray(image).save(buf, "JPEG")
  out = data_lib._decode(buf.getvalue(), data_lib.Crop("center", 64, 1.0), None, "RGB")
  assert out.shape == (64, 64, 3)
  assert out[:, :28].max() < 10 and out[:, 36:].min() > 245


def test_eval_batches_cover_the_split_once(real):
  batches = list(data_lib.eval_batches(real, 64, NONE))
  assert len(batches) == 4 and [b["mask"].sum() for b in batches] == [64, 64, 64, 8]
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(labels, real.labels)
  with pytest.raises(data_lib.DataError, match="random crops"):
    data_lib.crops(_data(eval_crop="inception"))


def test_make_train_data_from_config(synthetic):
  train = data_lib.make_train_data(
      _data(real="fashion_mnist_idx:test[:64]", synthetic=f"{synthetic[0]}:train",
            mix="ratio", synthetic_fraction=0.25), 16, 0)
  assert train.num_synthetic == 4 and train.describe()["sources"] == {
      "real": ["fashion_mnist_idx:test[:64]", 64],
      "synthetic": [f"{synthetic[0]}:train", 96]}


def test_synthetic_keep_trains_on_the_kept_synthetic_examples_only(synthetic, tmp_path):
  keep = np.array([3, 50, 7, 95, 0])
  np.save(tmp_path / "keep.npy", keep)
  train = data_lib.make_train_data(
      _data(real="fashion_mnist_idx:test[:64]", synthetic=f"{synthetic[0]}:train",
            mix="concat", synthetic_keep=str(tmp_path / "keep.npy")), 23, 0)
  assert train.epoch_size == 64 + 5
  syn = train.sources["synthetic"]
  assert len(syn) == 5 and "5 of 96" in syn.spec
  roles, indices = zip(*(train.slots(s) for s in range(3)))  # 69 = 3 x 23: one epoch.
  roles, indices = np.concatenate(roles), np.concatenate(indices)
  assert sorted(indices[roles == "synthetic"]) == list(range(5))
  images, labels = syn.read(np.arange(5), NONE, None)
  whole = data_lib.open_source(f"{synthetic[0]}:train")
  expected_images, expected_labels = whole.read(keep, NONE, None)
  np.testing.assert_array_equal(images, expected_images)
  np.testing.assert_array_equal(labels, expected_labels)


@pytest.mark.parametrize("keep", [np.array([0, 96]), np.array([[1, 2]]),
                                  np.array([0.5]), None])
def test_bad_synthetic_keep_is_a_clear_error(synthetic, tmp_path, keep):
  path = tmp_path / "keep.npy"
  if keep is None:
    path.write_text("not an array")
  else:
    np.save(path, keep)
  with pytest.raises(data_lib.DataError, match="synthetic_keep|indices into"):
    data_lib.make_train_data(
        _data(real="fashion_mnist_idx:test[:64]", synthetic=f"{synthetic[0]}:train",
              mix="concat", synthetic_keep=str(path)), 16, 0)


def _teacher_probs(n, k=10, seed=0):
  logits = np.random.default_rng(seed).normal(size=(n, k)) * 3
  probs = np.exp(logits)
  return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


def test_teacher_targets_follow_each_examples_source_index(synthetic, tmp_path):
  real_probs, syn_probs = _teacher_probs(64, seed=1), _teacher_probs(96, seed=2)
  np.save(tmp_path / "real.npy", real_probs)
  np.save(tmp_path / "syn.npy", syn_probs)
  keep = np.array([3, 50, 7, 95, 0])
  np.save(tmp_path / "keep.npy", keep)
  train = data_lib.make_train_data(
      _data(real="fashion_mnist_idx:test[:64]", synthetic=f"{synthetic[0]}:train",
            mix="ratio", synthetic_fraction=0.25, synthetic_keep=str(tmp_path /
                                                                     "keep.npy"),
            real_teacher=str(tmp_path / "real.npy"),
            synthetic_teacher=str(tmp_path / "syn.npy"), teacher_weight=0.5,
            teacher_temperature=2.0), 16, 0)
  soften = lambda p: np.exp(np.log(p) / 2) / np.exp(np.log(p) / 2).sum(1, keepdims=True)
  for step in range(3):
    roles, indices = train.slots(step)
    batch = train.batch(step)
    expected = np.where((roles == "real")[:, None], soften(real_probs)[indices % 64],
                        soften(syn_probs)[keep][indices % 5])
    np.testing.assert_allclose(batch["teacher"], expected, rtol=1e-5)
  # Temperature 1 gives the teacher's probabilities as they are; no teacher, no key.
  plain = data_lib.make_train_data(
      _data(real="fashion_mnist_idx:test[:64]", real_teacher=str(tmp_path / "real.npy"),
            teacher_weight=1.0), 16, 0)
  np.testing.assert_allclose(plain.batch(0)["teacher"],
                             real_probs[plain.slots(0)[1]], rtol=1e-5)
  assert "teacher" not in data_lib.make_train_data(
      _data(real="fashion_mnist_idx:test[:64]"), 16, 0).batch(0)


@pytest.mark.parametrize("fields, message", [
    (dict(teacher_weight=0.5), "data.real_teacher is empty"),
    (dict(teacher_weight=0.5, real_teacher="{tmp}/none.npy"), "cannot read it"),
    (dict(teacher_weight=0.5, real_teacher="{tmp}/short.npy"), r"shape \(64, 10\)"),
    (dict(teacher_weight=0.5, real_teacher="{tmp}/ok.npy", teacher_temperature=0.0),
     "must be > 0"),
    (dict(teacher_weight=1.5, real_teacher="{tmp}/ok.npy"), "not a weight in"),
])
def test_bad_teacher_targets_are_clear_errors(tmp_path, fields, message):
  np.save(tmp_path / "short.npy", _teacher_probs(63))
  np.save(tmp_path / "ok.npy", _teacher_probs(64))
  fields = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v
            for k, v in fields.items()}
  with pytest.raises(data_lib.DataError, match=message):
    data_lib.make_train_data(_data(real="fashion_mnist_idx:test[:64]", **fields), 16, 0)


# --- device augmentations -------------------------------------------------------------


def _images(n=8, size=24, channels=3, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, size, size, channels)).astype(np.uint8)


def _aug_config(**kw):
  base = dict(pad_crop=0, flip=False, randaug_layers=2, randaug_magnitude=0,
              randaug_std=0.0, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0)
  return ml_collections.ConfigDict({**base, **kw})


def test_augment_without_options_only_normalizes():
  images = _images()
  x, targets = augment.augment(images, np.arange(8) % 3, jax.random.PRNGKey(0),
                               _aug_config(), 3)
  np.testing.assert_allclose(x, images / 127.5 - 1.0, atol=1e-6)
  np.testing.assert_array_equal(targets, np.eye(3)[np.arange(8) % 3])


def test_teacher_targets_blend_with_the_labels():
  labels, teacher = np.arange(8) % 3, _teacher_probs(8, k=3)
  _, targets = augment.augment(_images(), labels, jax.random.PRNGKey(0),
                               _aug_config(label_smoothing=0.3), 3, teacher, 0.25)
  smoothed = np.eye(3)[labels] * 0.7 + 0.1
  np.testing.assert_allclose(targets, 0.75 * smoothed + 0.25 * teacher, rtol=1e-6)


def test_pad_crop_and_flip_are_per_image_windows():
  images = _images(n=64, size=8, channels=1).astype(np.float32)
  out = np.asarray(augment.pad_crop(jnp.asarray(images), jax.random.PRNGKey(0), 2))
  padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)])
  for img, src in zip(out, padded):
    assert any(np.array_equal(img, src[dy:dy + 8, dx:dx + 8])
               for dy in range(5) for dx in range(5))
  flipped = np.asarray(augment.flip(jnp.asarray(images), jax.random.PRNGKey(0)))
  mirrored = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images)]
  assert all(m or np.array_equal(f, i) for m, f, i in zip(mirrored, flipped, images))
  assert 10 < sum(mirrored) < 54


@pytest.mark.parametrize("op, pil", [
    ("equalize", PIL.ImageOps.equalize),
    ("auto_contrast", PIL.ImageOps.autocontrast),
])
def test_randaugment_ops_match_pillow(op, pil):
  images = _images(n=4, size=16, seed=1) // 2 + 40  # A narrow range, as in photos.
  got = np.asarray(getattr(augment, f"_{op}")(jnp.asarray(images, jnp.float32)))
  want = np.stack([np.asarray(pil(PIL.Image.fromarray(im))) for im in images])
  assert np.abs(got - want).max() <= 1.0


def test_randaugment_magnitude_ops_match_pillow():
  images = _images(n=2, size=16, seed=2)
  x = jnp.asarray(images, jnp.float32)
  pil = [PIL.Image.fromarray(im) for im in images]
  np.testing.assert_array_equal(
      augment._posterize(x, jnp.array([4.0, 6.0])),
      np.stack([PIL.ImageOps.posterize(pil[0], 4), PIL.ImageOps.posterize(pil[1], 6)]))
  factor = jnp.array([1.6, 0.4])
  for name, enhance, base in [
      ("color", PIL.ImageEnhance.Color, augment._gray(x)),
      ("brightness", PIL.ImageEnhance.Brightness, jnp.zeros_like(x))]:
    want = np.stack([np.asarray(enhance(p).enhance(float(f))) for p, f in zip(pil,
                                                                             factor)])
    assert np.abs(augment._blend(base, x, factor) - want).max() <= 1.5, name


def test_warp_identity_is_exact_and_translation_shifts():
  images = jnp.asarray(_images(n=2, size=6, channels=1), jnp.float32)
  identity = jnp.tile(jnp.array([[1.0, 0, 0], [0, 1, 0]]), (2, 1, 1))
  np.testing.assert_array_equal(augment._warp(images, identity), images)
  shift = identity.at[:, 0, 2].set(-2.0)  # Output x reads input x − 2.
  out = np.asarray(augment._warp(images, shift))
  np.testing.assert_array_equal(out[:, :, 2:], images[:, :, :4])
  assert (out[:, :, :2] == 128).all()


def test_randaugment_changes_images_and_stays_in_range():
  images = _images(n=64, size=16)
  x = augment.rand_augment_layer(jnp.asarray(images, jnp.float32),
                                 jax.random.PRNGKey(0), 9, 0.5)
  x = np.asarray(x)
  assert x.min() >= 0 and x.max() <= 255 and x.shape == images.shape
  changed = [not np.allclose(a, b) for a, b in zip(x, images)]
  assert 40 < sum(changed) < 64  # Identity (and no-op draws) leave a few unchanged.
  full, _ = augment.augment(images, np.zeros(64, np.int32), jax.random.PRNGKey(1),
                            _aug_config(randaug_magnitude=10, pad_crop=2, flip=True), 2)
  assert -1 <= full.min() and full.max() <= 1


def test_mixup_and_cutmix_mix_with_the_mirror_of_the_batch():
  images = jnp.asarray(_images(n=6, size=16), jnp.float32) / 127.5 - 1
  targets = augment.smooth_labels(jnp.arange(6) % 3, 3, 0.1)
  np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
  assert np.isclose(targets.max(), 0.9 + 0.1 / 3)
  x, t = augment.mixup_cutmix(images, targets, jax.random.PRNGKey(0), 0.8, 0.0)
  lam = float((t[0] - targets[5])[0] / (targets[0] - targets[5])[0])
  np.testing.assert_allclose(x, lam * images + (1 - lam) * images[::-1], atol=1e-5)
  x, t = augment.mixup_cutmix(images, targets, jax.random.PRNGKey(3), 0.0, 1.0)
  from_partner = np.all(np.asarray(x) == np.asarray(images[::-1]), axis=-1)
  kept = 1 - from_partner[0].mean()
  np.testing.assert_allclose(t, kept * targets + (1 - kept) * targets[::-1], atol=1e-5)
  kinds = set()  # Both enabled: each batch is cutmix (every pixel from one of the
  for k in range(12):  # pair) or mixup (blends), each some of the time.
    x, _ = augment.mixup_cutmix(images, targets, jax.random.PRNGKey(k), 0.8, 1.0)
    kinds.add(bool(np.all((x == images) | (x == images[::-1]))))
  assert kinds == {True, False}
