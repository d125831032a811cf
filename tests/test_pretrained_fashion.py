"""The shipped Fashion-MNIST diffusion model: it loads, samples, and carries the
sampler settings its sweep chose, which the workflow configs use."""
import json

import numpy as np

from synthfactory.datasets import seeding
from synthfactory.evaluation import sampler_sweep
from synthfactory.models import samplers
from synthfactory.models import unet
from synthfactory.pipelines.configs import fashion
from synthfactory.training import checkpoints

SHIPPED = fashion.SHIPPED_MODEL


def test_shipped_checkpoint_is_the_fashion_unet():
  config = checkpoints.load_model_config(SHIPPED)
  want = unet.unet_config("fashion")
  assert (config.image_size, config.channels, config.num_classes) == (28, 1, 10)
  assert tuple(config.channel_mult) == tuple(want.channel_mult)
  assert config.base_channels == want.base_channels


def test_shipped_sampler_settings_come_from_its_sweep():
  recorded = json.loads((SHIPPED / "sampler.json").read_text())
  chosen = samplers.SamplerConfig.from_dict(recorded["sampler"])
  metric, margin = f"FD-{recorded['extractor']}", recorded.get("fd_margin", 0.0)
  assert recorded["chosen_by"] == sampler_sweep.rule(metric, margin)
  assert sampler_sweep.choose(recorded["sweep"], metric, margin)["sampler"] == (
      recorded["sampler"])
  for variant in ("demo", "full"):
    config = fashion.get_config(variant)
    assert samplers.SamplerConfig.from_dict(config.generate.sampler.to_dict()) == chosen
  assert (SHIPPED / "README.md").exists() and (SHIPPED / "metrics.jsonl").exists()


def test_shipped_model_samples_every_class():
  model, params = checkpoints.load_model(SHIPPED)
  config = samplers.SamplerConfig(name="ddim", steps=3, guidance=2.0)
  sample = samplers.make_sampler(model.apply, model.schedule, config,
                                 model.image_shape, prediction=model.prediction,
                                 num_classes=model.num_classes)
  labels = np.arange(10, dtype=np.int32)
  images = np.asarray(sample(params, seeding.item_keys(0, labels, 0 * labels), labels))
  assert images.shape == (10, 28, 28, 1)
  assert np.isfinite(images).all() and np.abs(images).max() <= 1.0
  assert len(np.unique(images.reshape(10, -1), axis=0)) == 10
