"""TFDS builders: `tfds build` registers generated shards (or generates them), and
`tfds.data_source` reads them; mismatched or damaged folders are refused.

The model is a tiny U-Net at Fashion-MNIST's 28 px × 1 channel × 10 classes, saved as
an Orbax checkpoint; config 28x_0.001x is 60 images.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from synthfactory.beam_jobs import generation
from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.models import diffusion_model
from synthfactory.models import unet
from synthfactory.tfds_builders import all as all_builders  # noqa: F401  registers
from synthfactory.tfds_builders import registration
from synthfactory.tfds_builders import synthetic_builder
from synthfactory.training import checkpoints

CONFIG = "28x_0.001x"
OVERRIDES = {"sampler.steps": 2, "batch_size": 16, "num_shards": 2}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  cfg = unet.unet_config("tiny")
  cfg.update(image_size=28, channels=1, num_classes=10)
  params = diffusion_model.DiffusionModel.from_config(cfg).init(jax.random.PRNGKey(0))
  run = tmp_path_factory.mktemp("run")
  saver = checkpoints.Checkpointer(run, keep=1)
  saver.save(1, {"params": params, "ema_params": params,
                 "opt_state": {"count": np.zeros((), np.int32)}}, {}, cfg)
  saver.close()
  return run


@pytest.fixture(scope="module")
def generated(checkpoint, tmp_path_factory):
  """What `generate --config=...:fashion` writes for config 28x_0.001x."""
  config = generate_configs.get_config("fashion")
  config.checkpoint, config.plan.multiplier = str(checkpoint), "0.001"
  config.update_from_flattened_dict(OVERRIDES)
  out = tmp_path_factory.mktemp("generated")
  generation.run(config, out, beam_args=["--direct_running_mode=in_memory"])
  return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2",
          "NO_GCE_CHECK": "true",
          "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def tfds_build(data_dir, *args, env):
  tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
  return subprocess.run(
      [str(tfds_cli), "build", "synthetic_fashion_mnist",
       "--imports=synthfactory.tfds_builders.all", f"--config={CONFIG}",
       f"--data_dir={data_dir}", *args],
      env=env, capture_output=True, text=True, timeout=300, check=False)


def test_tfds_build_registers_generated_shards(generated, tmp_path, env):
  got = tfds_build(tmp_path, f"--manual_dir={generated}", env=env)
  assert got.returncode == 0, got.stderr[-3000:]
  source = tfds.data_source(f"synthetic_fashion_mnist/{CONFIG}", data_dir=tmp_path,
                            split="train")
  labels = [source[i]["label"] for i in range(len(source))]
  assert len(source) == 60 and np.bincount(labels).tolist() == [6] * 10
  assert source[0]["image"].shape == (28, 28, 1)
  builder = tfds.builder(f"synthetic_fashion_mnist/{CONFIG}", data_dir=tmp_path)
  assert builder.info.file_format.value == "array_record"
  assert builder.info.metadata["seed"] == 0
  assert len(builder.info.metadata["checkpoint"]["checkpoint_sha256"]) == 64
  m = json.loads((generated / "manifest.json").read_text())
  for s in m["shards"]:
    assert (builder.data_path / s["file"]).read_bytes() == (
        generated / s["file"]).read_bytes()


def test_tfds_build_generates_from_a_checkpoint(generated, checkpoint, tmp_path, env):
  got = tfds_build(tmp_path, env={
      **env, synthetic_builder.CHECKPOINT_ENV: str(checkpoint),
      synthetic_builder.OVERRIDES_ENV: json.dumps(OVERRIDES),
      synthetic_builder.BEAM_ARGS_ENV: "--direct_running_mode=in_memory"})
  assert got.returncode == 0, got.stderr[-3000:]
  builder = tfds.builder(f"synthetic_fashion_mnist/{CONFIG}", data_dir=tmp_path)
  m = json.loads((generated / "manifest.json").read_text())
  for s in m["shards"]:  # Same config, same bytes as the job run by hand.
    assert (builder.data_path / s["file"]).read_bytes() == (
        generated / s["file"]).read_bytes()


def _prepare(data_dir, manual_dir, config=CONFIG):
  builder = tfds.builder(f"synthetic_fashion_mnist/{config}", data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def test_a_folder_of_another_config_is_refused(generated, tmp_path):
  with pytest.raises(registration.DatasetError, match="multiplier is 0.001, expected "
                     "0.01"):
    _prepare(tmp_path, generated, config="28x_0.01x")


def test_a_damaged_folder_is_refused(generated, tmp_path):
  data = shutil.copytree(generated, tmp_path / "damaged")
  shard = next(data.glob("*.array_record-00001-of-00002"))
  raw = bytearray(shard.read_bytes())
  raw[300] ^= 1
  shard.write_bytes(bytes(raw))
  with pytest.raises(registration.DatasetError, match="fails validation"):
    _prepare(tmp_path / "tfds", data)
  assert not tfds.builder(f"synthetic_fashion_mnist/{CONFIG}",
                          data_dir=tmp_path / "tfds").is_prepared()


def test_nothing_to_register_says_how(tmp_path, monkeypatch):
  monkeypatch.delenv(synthetic_builder.CHECKPOINT_ENV, raising=False)
  builder = tfds.builder(f"synthetic_fashion_mnist/{CONFIG}", data_dir=tmp_path)
  with pytest.raises(registration.DatasetError, match="--manual_dir"):
    builder.download_and_prepare()


def test_imagenet_builder_configs():
  names = [c.name for c in tfds.builder_cls("synthetic_imagenet").BUILDER_CONFIGS]
  assert "1024x_4x" in names and "64x_1x" in names and len(names) == 30
  builder = tfds.builder("synthetic_imagenet/256x_2x", data_dir="/nonexistent")
  assert builder.info.features["label"].num_classes == 1000
  assert builder.info.features["image"].shape == (256, 256, 3)
  label = builder.info.features["label"]
  assert [label.int2str(i) for i in (0, 1, 207, 999)] == [
      "tench", "goldfish", "Golden Retriever", "toilet paper"]
  assert label.str2int("goldfish") == 1
  wnids = builder.info.metadata["wordnet_ids"]
  assert len(wnids) == 1000 and wnids[0] == "n01440764"
