"""Diffusion training: learning, bitwise resume, fine-tuning, errors, data parallelism.

One tiny model (the `ci` config) is compiled once per module and shared; runs that
need a fresh process (SIGKILL, forced host devices) go through subprocesses.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import jax
import numpy as np
import pytest

from synthfactory.models import losses
from synthfactory.models import schedules
from synthfactory.models import unet
from synthfactory.training import checkpoints
from synthfactory.training import diffusion_trainer
from synthfactory.training import input_pipeline
from synthfactory.training import progress
from synthfactory.training.configs import diffusion as diffusion_configs
from tree_asserts import assert_trees_equal  # tests/ (pytest.ini's pythonpath)

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO / "training" / "configs" / "diffusion.py"
# The shared run: the `ci` config (150 steps, checkpoints every 50) with these
# overrides, in-process and on the CLI.
OVERRIDES = {"log_every": 1}
NUM_STEPS, CHECKPOINT_EVERY = 150, 50
ARRAYS = ["params", "ema_params", "opt_state"]


def ci_config(**overrides):
  config = diffusion_configs.get_config("ci")
  config.update({**OVERRIDES, **overrides})
  return config


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """Subprocess environment; the two CLI runs share compiled programs via JAX's
  persistent cache (compiling the tiny U-Net's step takes 10-20 s here)."""
  cache = tmp_path_factory.mktemp("jax_cache")
  return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2",
          "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


@pytest.fixture(scope="module")
def config():
  return ci_config()


@pytest.fixture(scope="module")
def source(config):
  return input_pipeline.make_source(config.data)  # 256 Fashion-MNIST images.


@pytest.fixture(scope="module")
def trainer(config):
  return diffusion_trainer.Trainer(diffusion_trainer.build_model(config), config)


@pytest.fixture(scope="module")
def reference_run(trainer, source, tmp_path_factory):
  """An uninterrupted run of the ci config: (workdir, final state)."""
  workdir = tmp_path_factory.mktemp("reference")
  return workdir, trainer.fit(source, workdir)


# --- learning -------------------------------------------------------------------------


def test_loss_falls_on_fashion_mnist(reference_run, config):
  assert (config.num_steps, config.checkpoint_every) == (NUM_STEPS, CHECKPOINT_EVERY)
  loss = [r["loss"] for r in progress.read_metrics(reference_run[0])]
  assert len(loss) == NUM_STEPS
  first, last = np.mean(loss[:20]), np.mean(loss[-20:])
  assert np.isfinite(loss).all()
  assert last < 0.6 * first, (first, last)


def test_progress_logs_rate_and_eta(reference_run):
  record = progress.read_metrics(reference_run[0])[-1]
  assert record["step"] == NUM_STEPS
  assert record["steps_per_sec"] > 0 and record["images_per_sec"] > 0
  assert {"loss", "grad_norm"} <= record.keys()


# --- resume ---------------------------------------------------------------------------


def test_resumed_run_is_bitwise_identical(trainer, source, reference_run, tmp_path):
  trainer.fit(source, tmp_path, num_steps=60)  # Stops mid-run (checkpoints 50, 60).
  shutil.rmtree(tmp_path / "checkpoints" / "60")  # As if killed after step 50's save.
  resumed = trainer.fit(source, tmp_path)
  _, reference = reference_run
  assert int(resumed.step) == int(reference.step) == NUM_STEPS
  assert_trees_equal(resumed, reference)


def test_checkpoint_records_data_position_and_model(reference_run, config):
  workdir, _ = reference_run
  got = checkpoints.read(workdir, ["meta", "model_config"])
  steps_per_epoch = config.data.max_examples // config.batch_size
  assert got["meta"]["data_position"] == {
      "epoch": NUM_STEPS // steps_per_epoch,
      "batch_in_epoch": NUM_STEPS % steps_per_epoch}
  assert got["model_config"] == json.loads(config.model.to_json())
  model, params = checkpoints.load_model(workdir)
  assert model.image_shape == (8, 8, 1) and model.num_classes == 10
  assert_trees_equal(params, reference_run[1].ema_params)


def test_killed_cli_run_resumes_bitwise(reference_run, env, tmp_path):
  cmd = [sys.executable, "-m", "synthfactory.training.train_diffusion",
         f"--config={CONFIG_FILE}:ci", f"--workdir={tmp_path}",
         *[f"--config.{k}={v}" for k, v in OVERRIDES.items()]]
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  watchdog = threading.Timer(300, proc.kill)
  watchdog.start()
  log = []
  for line in proc.stderr:
    log.append(line)
    if "checkpoint saved at step" in line:
      proc.send_signal(signal.SIGKILL)
      break
  proc.wait()
  watchdog.cancel()
  assert proc.returncode == -signal.SIGKILL, "".join(log)[-3000:]
  killed_at = checkpoints.read(tmp_path, ["meta"])["meta"]["step"]
  assert killed_at < NUM_STEPS

  rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"resumed from step {killed_at}" in rerun.stderr
  assert "Renaming" not in rerun.stderr  # Orbax's INFO chatter is filtered.
  assert_trees_equal(checkpoints.read(tmp_path, ARRAYS),
                      checkpoints.read(reference_run[0], ARRAYS))


def test_resume_with_other_batch_order_is_refused(reference_run, source, tmp_path):
  shutil.copytree(reference_run[0] / "checkpoints", tmp_path / "checkpoints")
  other_seed = ci_config(seed=1)
  other = diffusion_trainer.Trainer(diffusion_trainer.build_model(other_seed),
                                    other_seed)
  with pytest.raises(checkpoints.CheckpointError, match="input order"):
    other.fit(source, tmp_path)


# --- fine-tuning ----------------------------------------------------------------------


def _keep_classes(tree, num_classes):
  """`tree` with every class-embedding leaf cut to num_classes + 1 rows."""
  return jax.tree_util.tree_map_with_path(
      lambda path, x: x[:num_classes + 1]
      if "class_embed" in jax.tree_util.keystr(path) else x, tree)


def test_finetune_from_another_label_set_keeps_other_weights(trainer, reference_run,
                                                             source, tmp_path):
  # A 3-class checkpoint: the reference U-Net with its class table cut to 3 + 1 rows.
  _, reference = reference_run
  pretrained = tmp_path / "pretrained"
  model_config = ci_config().model
  model_config.num_classes = 3
  arrays = {n: _keep_classes(getattr(reference, n), 3) for n in ARRAYS}
  saver = checkpoints.Checkpointer(pretrained, keep=1)
  saver.save(100, arrays, {}, model_config)
  saver.close()

  start = trainer.fit(source, tmp_path / "tuned", num_steps=0, init_from=str(pretrained))
  assert int(start.step) == 0
  fresh = trainer.init_state()
  flat = lambda tree: dict(jax.tree_util.tree_flatten_with_path(tree)[0])
  for name in ("params", "ema_params"):
    got, old, new = (flat(getattr(s, name)) for s in (start, reference, fresh))
    table = [p for p in got if "class_embed" in jax.tree_util.keystr(p)]
    assert len(table) == 1 and got[table[0]].shape[0] == 11
    np.testing.assert_array_equal(got[table[0]], new[table[0]])  # Fresh, 10 classes.
    for path in got.keys() - table:
      np.testing.assert_array_equal(got[path], old[path])  # Loaded.

  tuned = trainer.fit(source, tmp_path / "tuned", num_steps=2, init_from=str(pretrained))
  assert int(tuned.step) == 2
  assert checkpoints.load_model_config(tmp_path / "tuned").num_classes == 10
  assert np.isfinite(progress.read_metrics(tmp_path / "tuned")[-1]["loss"])


def test_finetune_errors_name_the_problem(tmp_path, trainer, source):
  with pytest.raises(checkpoints.CheckpointError, match="No checkpoint directory"):
    trainer.fit(source, tmp_path, init_from=str(tmp_path / "nowhere"))
  fresh = {"conv": {"kernel": np.zeros((3, 3, 1, 8))}, "class_embed": {
      "embedding": np.zeros((4, 16))}}
  pretrained = {"conv": {"kernel": np.zeros((3, 3, 1, 16))}, "class_embed": {
      "embedding": np.zeros((11, 16))}}
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"conv/kernel has shape \(3, 3, 1, 16\).*\(3, 3, 1, 8\)"):
    diffusion_trainer.merge_pretrained(fresh, pretrained, init_from="ckpt",
                                       num_classes=(10, 3))
  pretrained["conv"]["kernel"] = np.ones((3, 3, 1, 8))
  merged = diffusion_trainer.merge_pretrained(fresh, pretrained, init_from="ckpt",
                                              num_classes=(10, 3))
  assert merged["conv"]["kernel"].sum() == 72  # Loaded.
  assert merged["class_embed"]["embedding"].shape == (4, 16)  # Fresh.


def test_text_conditioned_model_keeps_its_table(reference_run, tmp_path):
  config = ci_config()
  config.model.context_dim = 8
  with pytest.raises(ValueError, match="set config.text_embeddings"):
    diffusion_trainer.build_model(config)
  np.save(tmp_path / "prompts.npy", np.random.default_rng(0).normal(
      size=(10, 3, 8)).astype(np.float32))
  config.text_embeddings = str(tmp_path / "prompts.npy")
  model = diffusion_trainer.build_model(config)
  assert model.text_table.shape == (11, 3, 8)  # Classes + the null prompt.

  saver = checkpoints.Checkpointer(tmp_path / "run", keep=1)
  arrays = {n: getattr(reference_run[1], n) for n in ARRAYS}  # Any arrays will do.
  saver.save(1, arrays, {}, config.model, text_table=model.text_table)
  saver.close()
  loaded, _ = checkpoints.load_model(tmp_path / "run")
  np.testing.assert_array_equal(loaded.text_table, model.text_table)


# --- checkpoint errors ----------------------------------------------------------------


def test_missing_checkpoint_is_one_clear_error(tmp_path):
  with pytest.raises(checkpoints.CheckpointError, match="No checkpoint directory"):
    checkpoints.load_params(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(checkpoints.CheckpointError, match="No checkpoint steps"):
    checkpoints.load_params(tmp_path / "empty")


@pytest.mark.parametrize("damage", ["garbage", "truncate"])
def test_corrupt_checkpoint_is_one_clear_error(reference_run, trainer, source,
                                               tmp_path, damage):
  shutil.copytree(reference_run[0] / "checkpoints", tmp_path / "checkpoints")
  step_dir = tmp_path / "checkpoints" / str(NUM_STEPS)
  for path in step_dir.rglob("*"):
    if path.is_file():
      if damage == "garbage":
        path.write_bytes(b"\x00garbage" * 4)
      else:
        os.truncate(path, path.stat().st_size // 2)
  with pytest.raises(checkpoints.CheckpointError, match="cannot be read") as info:
    checkpoints.load_params(tmp_path)
  assert str(step_dir) in str(info.value) and "Delete that step" in str(info.value)
  with pytest.raises(checkpoints.CheckpointError, match="cannot be read"):
    trainer.fit(source, tmp_path)  # Resuming from it fails the same way.


# --- data parallelism -----------------------------------------------------------------

_TWO_DEVICES = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, numpy as np
    from synthfactory.training import diffusion_trainer, input_pipeline
    from synthfactory.training.configs import diffusion
    config = diffusion.get_config("ci")
    config.update(json.loads(sys.argv[1]))
    model = diffusion_trainer.build_model(config)
    assert jax.local_device_count() == 2
    odd = diffusion.get_config("ci")
    odd.batch_size = 15
    try:
      diffusion_trainer.Trainer(model, odd)
    except ValueError as e:
      print("ERROR:", e)
    trainer = diffusion_trainer.Trainer(model, config)
    state = trainer.fit(input_pipeline.make_source(config.data), sys.argv[2])
    print("MESH", trainer.mesh.size)
    np.savez(sys.argv[3], *jax.tree.leaves(jax.device_get(state.params)))
""")


def test_two_devices_match_one(trainer, source, env, tmp_path):
  steps = 4
  run = subprocess.run(
      [sys.executable, "-c", _TWO_DEVICES,
       json.dumps({**OVERRIDES, "num_steps": steps}),
       str(tmp_path / "two"), str(tmp_path / "params.npz")],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "MESH 2" in run.stdout
  assert ("ERROR: batch_size 15 does not divide evenly over 2 devices; use a "
          "multiple of 2.") in run.stdout

  one = trainer.fit(source, tmp_path / "one", num_steps=steps)
  loss = lambda d: [r["loss"] for r in progress.read_metrics(tmp_path / d)]
  np.testing.assert_allclose(loss("two"), loss("one"), rtol=1e-5)
  two_params = np.load(tmp_path / "params.npz")
  for i, leaf in enumerate(jax.tree.leaves(one.params)):
    np.testing.assert_allclose(two_params[f"arr_{i}"], leaf, rtol=1e-4, atol=1e-6)


# --- super-resolution and the loss ----------------------------------------------------


def test_super_resolution_training_with_noise_augmentation(tmp_path):
  config = ci_config(max_aug=0.3, batch_size=8, num_steps=3)
  config.model = unet.unet_config("tiny_sr")
  rng = np.random.default_rng(0)
  data = input_pipeline.ArraySource(rng.integers(0, 256, (32, 16, 16, 3), np.uint8),
                                    rng.integers(0, 4, 32))
  model = diffusion_trainer.build_model(config)
  state = diffusion_trainer.Trainer(model, config).fit(data, tmp_path)
  assert int(state.step) == 3
  assert all(np.isfinite(r["loss"]) for r in progress.read_metrics(tmp_path))
  loaded, _ = checkpoints.load_model(tmp_path)
  assert loaded.image_shape == (16, 16, 3)


class _RecordingModel:
  """Stands in for a DiffusionModel: predicts 0 and records what it was given."""
  schedule = schedules.NoiseSchedule.create("linear", 1000)
  prediction, num_classes = "eps", 10

  def apply(self, params, x_t, t, labels, cond=None, *, train=False, rngs=None):
    self.seen = dict(t=t, labels=labels, cond=cond, train=train, rngs=rngs)
    return np.zeros(x_t.shape, np.float32)

  def noise_augment(self, low_res, aug_level, key):
    return low_res + aug_level[:, None, None, None] * jax.random.normal(
        key, low_res.shape)


def _batch(n, low_res=False):
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(-1, 1, (n, 8, 8, 1)).astype(np.float32),
           "label": rng.integers(0, 10, n).astype(np.int32)}
  if low_res:
    batch["low_res"] = np.zeros((n, 4, 4, 1), np.float32)
  return batch


def test_loss_of_zero_model_is_noise_variance():
  model = _RecordingModel()
  loss = losses.diffusion_loss(model, 1.0, _batch(4096), jax.random.PRNGKey(0))
  np.testing.assert_allclose(loss, 1.0, atol=0.01)  # E[ε²] with ε ~ N(0, 1).
  t = np.asarray(model.seen["t"])
  assert t.min() >= 0 and t.max() < 1000 and len(np.unique(t)) > 900
  assert model.seen["train"] and "dropout" in model.seen["rngs"]


@pytest.mark.parametrize("p, expected_null", [(0.0, 0.0), (0.3, 0.3), (1.0, 1.0)])
def test_label_dropout_uses_the_null_label(p, expected_null):
  model, batch = _RecordingModel(), _batch(4096)
  losses.diffusion_loss(model, 1.0, batch, jax.random.PRNGKey(1), label_dropout=p)
  labels = np.asarray(model.seen["labels"])
  null = labels == model.num_classes
  assert abs(null.mean() - expected_null) < 0.03
  np.testing.assert_array_equal(labels[~null], batch["label"][~null])


def test_noise_augmentation_levels_span_zero_to_max():
  model = _RecordingModel()
  losses.diffusion_loss(model, 1.0, _batch(2048, low_res=True), jax.random.PRNGKey(2),
                        max_aug=0.4)
  level = np.asarray(model.seen["cond"]["aug_level"])
  assert level.min() >= 0 and level.max() <= 0.4 and level.max() > 0.39
  noised = np.asarray(model.seen["cond"]["low_res"])
  assert noised.std() > 0.1  # The zero low-res input was augmented.


# --- input order and config -----------------------------------------------------------


def test_batch_order_is_a_pure_function_of_seed_and_step():
  n, b = 50, 8  # 6 batches an epoch, 2 examples dropped.
  epoch = np.concatenate([input_pipeline.batch_indices(n, b, 0, s) for s in range(6)])
  assert len(set(epoch)) == 48
  again = input_pipeline.batch_indices(n, b, 0, 3)
  np.testing.assert_array_equal(again, epoch[24:32])
  assert not np.array_equal(input_pipeline.batch_indices(n, b, 0, 6), epoch[:8])
  assert not np.array_equal(input_pipeline.batch_indices(n, b, 1, 0), epoch[:8])
  assert input_pipeline.data_position(n, b, 13) == {"epoch": 2, "batch_in_epoch": 1}
  with pytest.raises(input_pipeline.InputError, match="fewer than one batch"):
    input_pipeline.batch_indices(5, b, 0, 0)


def test_prefetched_batches_follow_the_order():
  data = input_pipeline.ArraySource(np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1),
                                    np.arange(20))
  got = [b["label"] for b in input_pipeline.batches(data, 4, 7, 3, 9)]
  want = [input_pipeline.batch_indices(20, 4, 7, s) for s in range(3, 9)]
  np.testing.assert_array_equal(got, want)


def test_tfds_source_reads_batches():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=10):
    data = input_pipeline.TfdsSource("mnist", "train")
    batch = data.read(np.array([3, 1]))
  assert batch["image"].shape == (2, 28, 28, 1) and batch["image"].dtype == np.float32
  assert -1 <= batch["image"].min() and batch["image"].max() <= 1
  assert batch["label"].shape == (2,)
  with pytest.raises(input_pipeline.InputError, match="tfds build"):
    input_pipeline.TfdsSource("mnist", "train", data_dir="/nonexistent")


def test_center_crop_resize():
  image = np.zeros((40, 60, 3), np.uint8)
  image[:, 10:50] = 255  # The central 40x40 square is white.
  out = input_pipeline.center_crop_resize(image, 16)
  assert out.shape == (16, 16, 3) and out.min() == 255


def test_config_variants():
  for variant, image_size in [("ci", 8), ("fashion", 28), ("imagenet64", 64),
                              ("sr256", 256)]:
    config = diffusion_configs.get_config(variant)
    assert config.model.image_size == image_size
  assert diffusion_configs.get_config("imagenet64").optim.name == "adafactor"
  assert diffusion_configs.get_config("sr256").max_aug > 0
  with pytest.raises(ValueError, match="Unknown config variant"):
    diffusion_configs.get_config("nope")


def test_optimizers():
  config = diffusion_configs.get_config("ci")
  for name in ("adam", "adamw", "adafactor"):
    config.optim.name = name
    diffusion_trainer.make_optimizer(config.optim, 1e-3).init({"w": np.zeros(3)})
  config.optim.name = "sgd"
  with pytest.raises(ValueError, match="Unknown optimizer"):
    diffusion_trainer.make_optimizer(config.optim, 1e-3)


def test_schedule_cools_down_from_decay_start():
  optim = diffusion_configs.get_config("fashion").optim
  optim.update(lr=2e-4, warmup_steps=100, decay_start=0)
  constant = diffusion_trainer.make_schedule(optim, 1000)
  assert float(constant(50)) == pytest.approx(1e-4)
  assert float(constant(999)) == pytest.approx(2e-4)
  optim.update(decay_start=600, final_lr_fraction=0.1)
  cooled = diffusion_trainer.make_schedule(optim, 1000)
  assert float(cooled(600)) == pytest.approx(2e-4)  # No jump where the decay starts.
  assert float(cooled(800)) == pytest.approx(2e-4 * (0.1 + 0.9 * 0.5), rel=1e-5)
  assert float(cooled(1000)) == pytest.approx(2e-5)
  optim.decay_start = 1000
  with pytest.raises(ValueError, match="decay_start=1000 must lie between"):
    diffusion_trainer.make_schedule(optim, 1000)
