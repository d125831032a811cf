"""The generation tests' model as a training run's Orbax checkpoint."""
import jax
import numpy as np

from synthfactory.models import diffusion_model
from synthfactory.models import unet
from synthfactory.training import checkpoints


def save(workdir, num_classes=4):
  """Saves the `tiny` U-Net's initial weights (PRNGKey 0, the ci generation config's
  model) as step 1 of a run in `workdir`, as the training job lays it out."""
  cfg = unet.unet_config("tiny")
  cfg.num_classes = num_classes
  params = diffusion_model.DiffusionModel.from_config(cfg).init(jax.random.PRNGKey(0))
  saver = checkpoints.Checkpointer(workdir, keep=1)
  saver.save(1, {"params": params, "ema_params": params,
                 "opt_state": {"count": np.zeros((), np.int32)}}, {}, cfg)
  saver.close()
