"""The Fashion-MNIST feature network: a classifier trained on real data, its
penultimate features (DESIGN §4, issue 4 §3).

  python -m synthfactory.evaluation.evaluate --extractor=fmnist:<classifier workdir> ...

<classifier workdir> is a run of the classifier job (e.g. the `fashion` config; its
workdir or checkpoints folder); its EMA variables of the latest step are used. The
features are the head's input (small_cnn: the flattened 7x7x64 map, D = 3136; any
family of models/classifiers works), the logits give an Inception-style score. Metrics
are reported as "FD-fmnist" and "IS-fmnist", never as FID/IS: the numbers are not
comparable with Inception ones, nor between two classifiers, which is why the
extractor's identity (keying cached reference statistics) is a hash of the
classifier's architecture and variables.
"""
import hashlib

import jax
import numpy as np

from synthfactory.evaluation import feature_extractor

NAME = "fmnist"
BATCH_SIZE = 200


def variables_identity(model, variables):
  """SHA-256 of the module (class and fields, e.g. width, dtype) and every array's
  path, dtype, shape and bytes."""
  h = hashlib.sha256(repr(model).encode())
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    leaf = np.ascontiguousarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}{leaf.dtype}{leaf.shape}".encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


def make_extractor(workdir, batch_size=BATCH_SIZE):
  """The FeatureExtractor "fmnist" of the classifier trained in `workdir`."""
  if not workdir:
    raise ValueError("The fmnist extractor needs a trained classifier: "
                     "--extractor=fmnist:<workdir of train_classifier, e.g. the "
                     "`fashion` config>.")
  # Training code (Orbax, optax) only when this extractor is asked for.
  from flax import errors as flax_errors
  from synthfactory.models import classifiers
  from synthfactory.training import checkpoints
  from synthfactory.training import classifier_trainer
  try:
    model, variables = classifier_trainer.load_classifier(workdir)
  except checkpoints.CheckpointError as e:
    raise ValueError(f"Cannot load the fmnist classifier: {e}") from e
  identity = variables_identity(model, variables)
  variables = jax.device_put(variables)  # Once, not per batch.

  @jax.jit
  def apply(images):
    logits, features = classifiers.apply_with_features(model, variables, images)
    return {"features": features, "logits": logits}

  def fn(images):
    try:
      return apply(images)
    # Flax reports a wrong image size or channel count as a parameter shape error.
    except (flax_errors.FlaxError, TypeError, ValueError) as e:
      raise ValueError(
          f"The fmnist classifier in {workdir} ({type(model).__name__}) cannot take "
          f"images of shape {images.shape[1:]}; it takes the (H, W, C) it was trained "
          f"on (Fashion-MNIST: 28x28x1). {type(e).__name__}: {str(e)[:300]}") from e

  return feature_extractor.FeatureExtractor(
      name=NAME, fn=fn, batch_size=batch_size, identity=identity)


feature_extractor.register(NAME, make_extractor)
