"""The Fashion-MNIST feature network (evaluation/fmnist_features.py): penultimate
features of a classifier trained on real data, named FD-fmnist / IS-fmnist.

One tiny classifier (the `ci` config, a few steps) is trained per module."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synthfactory.evaluation import feature_extractor
from synthfactory.evaluation import fmnist_features
from synthfactory.evaluation import frechet
from synthfactory.models import classifiers
from synthfactory.training import classifier_data
from synthfactory.training import classifier_trainer
from synthfactory.training.configs import classifier as classifier_configs

NUM_IMAGES = 400


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  config = classifier_configs.get_config("ci")
  config.update(num_steps=20, checkpoint_every=20, log_every=20)
  data = classifier_data.make_train_data(config.data, config.batch_size, config.seed)
  trainer = classifier_trainer.Trainer(classifiers.build(config.model), config, data)
  workdir = tmp_path_factory.mktemp("fmnist_classifier")
  trainer.fit(workdir)
  return workdir


@pytest.fixture(scope="module")
def extractor(workdir):
  return feature_extractor.create(f"fmnist:{workdir}")  # Known without an import flag.


@pytest.fixture(scope="module")
def images():
  source = classifier_data.open_source(f"fashion_mnist_idx:test[:{NUM_IMAGES}]")
  return source.images[:NUM_IMAGES]  # uint8 (N, 28, 28, 1)


def _features(extractor, images):
  return np.concatenate([extractor(images[i:i + extractor.batch_size])["features"]
                         for i in range(0, len(images), extractor.batch_size)])


def _fd(a, b):
  stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a.astype(np.float64),
                                                        b.astype(np.float64))]
  return frechet.frechet_distance(*stats[0], *stats[1])


def test_names_and_identity(extractor, workdir):
  assert "fmnist" in feature_extractor.registered()
  assert (extractor.name, extractor.metric_name, extractor.score_name) == (
      "fmnist", "FD-fmnist", "IS-fmnist")
  assert not extractor.is_fid_network
  model, variables = classifier_trainer.load_classifier(workdir)
  assert extractor.identity == fmnist_features.variables_identity(model, variables)
  changed = jax.tree.map(lambda x: x * 1.001, variables)
  assert fmnist_features.variables_identity(model, changed) != extractor.identity


def test_features_are_the_head_input_and_deterministic(extractor, workdir, images):
  out = extractor(images[:7])
  # small_cnn_tiny: the flattened 7x7x(2 * width 4) map; logits of the 10 classes.
  assert out["features"].shape == (7, 7 * 7 * 8) and out["logits"].shape == (7, 10)
  again = extractor(images[:7])
  np.testing.assert_array_equal(out["features"], again["features"])
  # Padding the batch changes nothing; logits are the classifier's own.
  full = extractor(images[:extractor.batch_size])
  np.testing.assert_allclose(full["features"][:7], out["features"], rtol=1e-5,
                             atol=1e-6)
  model, variables = classifier_trainer.load_classifier(workdir)
  logits = model.apply(variables, images[:7] / 127.5 - 1.0)
  np.testing.assert_allclose(out["logits"], logits, rtol=1e-4, atol=1e-5)
  head = variables["params"]["head"]["kernel"]
  np.testing.assert_allclose(out["features"] @ head + variables["params"]["head"]
                             ["bias"], logits, rtol=1e-4, atol=1e-4)


def test_fd_is_zero_against_itself_and_grows_with_a_shift(extractor, images):
  real = _features(extractor, images)
  shifted = _features(extractor, np.roll(images, 4, axis=2))  # 4 px to the right.
  assert abs(_fd(real, real)) < 1e-6
  other_real = _features(extractor, images[::-1][:NUM_IMAGES // 2])
  within = _fd(real[:NUM_IMAGES // 2], other_real)
  assert _fd(real, shifted) > 2 * within > 0


def test_bad_inputs_give_clear_errors(extractor, tmp_path):
  with pytest.raises(ValueError, match="28x28x1"):
    extractor(np.zeros((2, 32, 32, 3), np.uint8))
  with pytest.raises(ValueError, match="needs a trained classifier"):
    feature_extractor.create("fmnist")
  with pytest.raises(ValueError, match="Cannot load the fmnist classifier"):
    feature_extractor.create(f"fmnist:{tmp_path / 'nothing'}")


@pytest.mark.parametrize("name", ["small_resnet_tiny", "resnet_tiny", "vit_tiny"])
def test_every_family_gives_its_head_input(name):
  """The features are what the head maps to the logits (train=False: no dropout)."""
  model = classifiers.build(classifiers.model_config(name, num_classes=5))
  x = jnp.linspace(-1, 1, 2 * 32 * 32 * 3).reshape(2, 32, 32, 3)
  # Jitted: compiling is quicker than running these models op by op.
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  assert "intermediates" not in variables  # The sow leaves init and training alone.
  logits, features = jax.jit(functools.partial(classifiers.apply_with_features,
                                               model))(variables, x)
  head = variables["params"]["head"]
  assert features.shape == (2, head["kernel"].shape[0])
  np.testing.assert_allclose(features @ head["kernel"] + head["bias"], logits,
                             rtol=1e-4, atol=1e-4)
