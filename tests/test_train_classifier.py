"""Classifier training: learning, evaluation, bitwise resume (in process and after a
SIGKILL), schedules, configs and data parallelism.

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

from synthfactory.models import classifiers
from synthfactory.training import checkpoints
from synthfactory.training import classifier_data
from synthfactory.training import classifier_trainer
from synthfactory.training import progress
from synthfactory.training.configs import classifier as classifier_configs
from tree_asserts import assert_trees_equal  # tests/ (pytest.ini's pythonpath)

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO / "training" / "configs" / "classifier.py"
# The shared run: the `ci` config with these overrides, in-process and on the CLI.
OVERRIDES = {"num_steps": 24, "checkpoint_every": 8, "log_every": 4, "ema_decay": 0.9}
ARRAYS = ["params", "ema_params", "opt_state"]


def ci_config(**overrides):
  config = classifier_configs.get_config("ci")
  config.update({**OVERRIDES, **overrides})
  return config


def _env():
  return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def config():
  return ci_config()


@pytest.fixture(scope="module")
def data(config):
  return classifier_data.make_train_data(config.data, config.batch_size, config.seed)


@pytest.fixture(scope="module")
def eval_source(config):
  return classifier_data.open_source(config.data.eval)


@pytest.fixture(scope="module")
def trainer(config, data):
  return classifier_trainer.Trainer(classifiers.build(config.model), config, data)


@pytest.fixture(scope="module")
def reference_run(trainer, eval_source, tmp_path_factory):
  """An uninterrupted 24-step run with evaluation: (workdir, final state)."""
  workdir = tmp_path_factory.mktemp("reference")
  return workdir, trainer.fit(workdir, eval_source)


# --- learning and evaluation ----------------------------------------------------------


def test_training_step_lowers_the_loss_on_a_fixed_batch(trainer, data):
  state, batch = trainer.init_state(), data.batch(0)
  losses = []
  for _ in range(5):
    state, metrics = trainer.step(state, batch)
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_teacher_targets_reach_the_loss(trainer, data):
  """Teacher probabilities equal to the labels change nothing; a uniform teacher of
  weight w is label smoothing w."""
  def loss(cfg, batch):
    t = classifier_trainer.Trainer(classifiers.build(cfg.model), cfg, data)
    return float(t.step(t.init_state(), batch)[1]["loss"])
  distill, smooth = ci_config(), ci_config()
  distill.data.teacher_weight = 0.25
  smooth.augment.label_smoothing = 0.25
  batch = data.batch(0)
  onehot = np.eye(data.num_classes, dtype=np.float32)[batch["label"]]
  uniform = np.full_like(onehot, 1 / data.num_classes)
  plain = float(trainer.step(trainer.init_state(), batch)[1]["loss"])
  np.testing.assert_allclose(loss(distill, {**batch, "teacher": onehot}), plain,
                             rtol=1e-6)
  smoothed = loss(smooth, batch)
  assert abs(smoothed - plain) > 1e-3
  np.testing.assert_allclose(loss(distill, {**batch, "teacher": uniform}), smoothed,
                             rtol=1e-6)


def test_eval_json_has_top1_top5_and_per_class_accuracy(reference_run, eval_source):
  workdir, state = reference_run
  got = json.loads((workdir / classifier_trainer.EVAL_FILE).read_text())
  assert got["step"] == OVERRIDES["num_steps"] and got["num_examples"] == 500
  assert got["split"] == "fashion_mnist_idx:test[:500]"
  assert 0 <= got["top1"] <= got["top5"] <= 1
  assert list(got["per_class"]) == list(eval_source.class_names)
  assert sum(got["per_class_count"].values()) == 500
  counts = np.array(list(got["per_class_count"].values()))
  acc = np.array([got["per_class"][n] for n in eval_source.class_names])
  np.testing.assert_allclose((acc * counts).sum() / 500, got["top1"], atol=1e-6)
  # Evaluation uses the EMA variables and reproduces from a loaded checkpoint.
  model, variables = classifier_trainer.load_classifier(workdir)
  assert_trees_equal(variables, state.ema_variables)
  logits = model.apply(variables, eval_source.images[:500] / 127.5 - 1.0)
  top1 = np.mean(np.argmax(logits, -1) == eval_source.labels[:500])
  assert abs(top1 - got["top1"]) < 1e-6


def test_progress_logs_rate_eta_and_metrics(reference_run):
  records = progress.read_metrics(reference_run[0])
  assert [r["step"] for r in records] == [4, 8, 12, 16, 20, 24]
  assert {"loss", "accuracy", "lr", "steps_per_sec", "images_per_sec"} <= set(
      records[-1])


def test_fashion_mnist_is_learned(config, data, eval_source, tmp_path):
  """The real job's code path learns: 300 steps of the tiny CNN beat chance by far."""
  cfg = ci_config(num_steps=300, checkpoint_every=300, log_every=100, ema_decay=0.0)
  cfg.optim.lr = 0.2
  trainer = classifier_trainer.Trainer(classifiers.build(cfg.model), cfg, data)
  trainer.fit(tmp_path, eval_source)
  assert json.loads((tmp_path / "eval.json").read_text())["top1"] > 0.5


# --- resume ---------------------------------------------------------------------------


def test_resumed_run_is_bitwise_identical(trainer, reference_run, tmp_path):
  trainer.fit(tmp_path, num_steps=12)  # Checkpoints 8 and 12.
  shutil.rmtree(tmp_path / "checkpoints" / "12")  # As if killed after step 8's save.
  resumed = trainer.fit(tmp_path)
  _, reference = reference_run
  assert int(resumed.step) == int(reference.step) == OVERRIDES["num_steps"]
  assert_trees_equal(resumed, reference)


def test_killed_cli_run_resumes_bitwise(reference_run, tmp_path):
  cmd = [sys.executable, "-m", "synthfactory.training.train_classifier",
         f"--config={CONFIG_FILE}:ci", f"--workdir={tmp_path}",
         *[f"--config.{k}={v}" for k, v in OVERRIDES.items()]]
  proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
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
  killed_at = checkpoints.Checkpointer(tmp_path, keep=2).latest_step()
  assert killed_at < OVERRIDES["num_steps"]

  rerun = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True,
                         timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"resumed from step {killed_at}" in rerun.stderr
  assert "eval at step 24" in rerun.stderr
  assert_trees_equal(checkpoints.read(tmp_path, ARRAYS),
                      checkpoints.read(reference_run[0], ARRAYS))
  ref_eval = json.loads((reference_run[0] / "eval.json").read_text())
  assert json.loads((tmp_path / "eval.json").read_text()) == ref_eval


def test_resume_with_other_batch_order_is_refused(reference_run, tmp_path):
  shutil.copytree(reference_run[0] / "checkpoints", tmp_path / "checkpoints")
  config = ci_config(seed=1)
  other = classifier_trainer.Trainer(
      classifiers.build(config.model), config,
      classifier_data.make_train_data(config.data, config.batch_size, 1))
  with pytest.raises(checkpoints.CheckpointError, match="input order"):
    other.fit(tmp_path)


# --- pretraining ----------------------------------------------------------------------


def test_init_from_starts_a_new_run_from_a_trained_classifier(reference_run, data,
                                                             tmp_path):
  workdir, trained = reference_run
  config = ci_config(num_steps=8, init_from=str(workdir))
  tuned = classifier_trainer.Trainer(classifiers.build(config.model), config, data)
  start = tuned.pretrained_state()
  assert int(start.step) == 0
  assert_trees_equal(start.variables, trained.ema_variables)
  assert_trees_equal(start.opt_state, tuned.init_state().opt_state)  # Fresh optimizer.
  tuned.fit(tmp_path)
  # It learns on from there: after 4 steps its loss is below a fresh run's at step 4.
  first = progress.read_metrics(tmp_path)[0]
  fresh = progress.read_metrics(workdir)[0]
  assert first["step"] == fresh["step"] == 4 and first["loss"] < fresh["loss"]


def test_init_from_another_model_or_nothing_is_a_clear_error(reference_run, data,
                                                            tmp_path):
  config = ci_config(init_from=str(reference_run[0]))
  config.model.name = "small_cnn"
  other = classifier_trainer.Trainer(classifiers.build(config.model), config, data)
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"(?s)\(small_cnn_tiny\) does not fit this run's model "
                           r"\(small_cnn\).*fix: set config.model"):
    other.fit(tmp_path / "a")
  config = ci_config(init_from=str(tmp_path / "nowhere"))
  missing = classifier_trainer.Trainer(classifiers.build(config.model), config, data)
  with pytest.raises(checkpoints.CheckpointError, match="No checkpoint directory"):
    missing.fit(tmp_path / "b")


# --- mixtures, errors -----------------------------------------------------------------


def test_real_plus_synthetic_tfds_run(tmp_path):
  rng = np.random.default_rng(0)
  folder = classifier_data.write_tfds_dataset(
      tmp_path / "tfds", "synthetic_fashion", {"train": (
          rng.integers(0, 256, (64, 28, 28, 1), np.uint8), rng.integers(0, 10, 64))},
      classifier_data.fashion_mnist.CLASS_NAMES)
  config = ci_config(num_steps=4, checkpoint_every=4, log_every=2)
  config.data.update(synthetic=f"{folder}:train", mix="ratio", synthetic_fraction=0.5,
                     cache_mb=0)  # Decoded per batch, as a large dataset would be.
  data = classifier_data.make_train_data(config.data, config.batch_size, config.seed)
  trainer = classifier_trainer.Trainer(classifiers.build(config.model), config, data)
  state = trainer.fit(tmp_path / "run", classifier_data.open_source(config.data.eval),
                      classifier_data.Crop("none", 28))
  assert int(state.step) == 4
  meta = checkpoints.read(tmp_path / "run", ["meta"])["meta"]
  assert meta["data"]["num_synthetic"] == 16
  assert meta["data"]["sources"]["synthetic"] == [f"{folder}:train", 64]


def test_model_and_data_must_agree_on_classes(data):
  config = ci_config()
  config.model.num_classes = 5
  with pytest.raises(classifier_data.DataError, match="set model.num_classes=10"):
    classifier_trainer.Trainer(classifiers.build(config.model), config, data)


# --- schedules, optimizers, configs ---------------------------------------------------


def test_cas_schedule_is_the_papers():
  optim = classifier_configs.get_config("cas_resnet50").optim
  schedule = classifier_trainer.make_schedule(optim, steps_per_epoch=100,
                                              num_steps=9000)
  lr = lambda epoch: float(schedule(round(epoch * 100)))
  assert lr(0) == 0 and np.isclose(lr(2.5), 0.2) and np.isclose(lr(5), 0.4)
  assert np.isclose(lr(29.99), 0.4) and np.isclose(lr(30), 0.04)
  assert np.isclose(lr(60), 0.004) and np.isclose(lr(80), 0.0004)
  cosine = classifier_configs.get_config("resnet50").optim
  schedule = classifier_trainer.make_schedule(cosine, steps_per_epoch=10,
                                              num_steps=1300)
  assert np.isclose(float(schedule(50)), 1.6)
  assert np.isclose(float(schedule(675)), 0.8) and float(schedule(1300)) == 0


def test_weight_decay_spares_biases_and_norms():
  optim = classifier_configs.get_config("fashion").optim
  optim.update(lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.5)
  tx = classifier_trainer.make_optimizer(optim, lambda _: 1.0)
  params = {"conv": {"kernel": np.ones((3, 3)), "bias": np.ones(3)},
            "bn": {"scale": np.ones(3)}}
  zeros = jax.tree.map(np.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert np.allclose(updates["conv"]["kernel"], -0.5)
  assert not np.any(updates["conv"]["bias"]) and not np.any(updates["bn"]["scale"])


def test_config_variants_encode_the_tables():
  for variant in classifier_configs.VARIANTS:
    config = classifier_configs.get_config(variant)
    assert config.model.name in classifiers.NAMES
  cas = classifier_configs.get_config("cas_resnet50")
  assert (cas.model.name, cas.epochs, cas.batch_size) == ("resnet50", 90, 1024)
  assert (cas.optim.name, cas.optim.lr, cas.optim.momentum) == ("sgd", 0.4, 0.9)
  assert cas.optim.weight_decay == 1e-4
  assert tuple(cas.optim.decay_epochs) == (30, 60, 80)
  assert cas.data.mix == "synthetic" and cas.data.eval == "imagenet2012:validation"
  assert (cas.data.train_crop, cas.data.eval_crop, cas.data.crop_fraction,
          cas.data.image_size) == ("center", "center", 0.875, 224)
  assert not cas.augment.flip and not cas.augment.randaug_magnitude
  rs = classifier_configs.get_config("resnet_rs50")
  assert (rs.epochs, rs.batch_size, rs.optim.lr, rs.optim.weight_decay) == (
      350, 4096, 1.6, 4e-5)
  assert (rs.data.image_size, rs.model.dropout, rs.augment.randaug_magnitude,
          rs.augment.label_smoothing) == (160, 0.25, 10, 0.1)
  assert classifier_configs.get_config("resnet_rs101_190").data.image_size == 190
  assert classifier_configs.get_config("resnet152").augment.randaug_magnitude == 15
  deit = classifier_configs.get_config("deit_b")
  assert (deit.optim.name, deit.optim.lr, deit.epochs, deit.augment.mixup_alpha,
          deit.augment.cutmix_alpha, deit.augment.randaug_magnitude) == (
              "adamw", 4e-3, 300, 0.8, 1.0, 9)
  assert classifier_configs.get_config("deit_b_384").data.image_size == 384
  vit = classifier_configs.get_config("vit_s16")
  assert (vit.batch_size, vit.optim.warmup_epochs, vit.augment.mixup_alpha,
          vit.augment.label_smoothing) == (1024, 10, 0.2, 0.0)
  with pytest.raises(ValueError, match="Unknown config variant"):
    classifier_configs.get_config("resnet51")


# --- data parallelism -----------------------------------------------------------------

_TWO_DEVICES = textwrap.dedent("""
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, numpy as np
    from synthfactory.models import classifiers
    from synthfactory.training import classifier_data, classifier_trainer
    from synthfactory.training.configs import classifier
    config = classifier.get_config("ci")
    config.update(json.loads(sys.argv[1]))
    config.model.name = sys.argv[2]
    assert jax.local_device_count() == 2
    data = classifier_data.make_train_data(config.data, config.batch_size, 0)
    model = classifiers.build(config.model)
    odd = classifier.get_config("ci")
    odd.batch_size = 15
    try:
      classifier_trainer.Trainer(model, odd, data)
    except ValueError as e:
      print("ERROR:", e)
    for devices in (jax.local_devices(), jax.local_devices()[:1]):
      trainer = classifier_trainer.Trainer(model, config, data, devices)
      state = trainer.fit(f"{sys.argv[3]}/{len(devices)}", num_steps=int(sys.argv[4]))
      np.savez(f"{sys.argv[3]}/{len(devices)}.npz",
               *jax.tree.leaves(jax.device_get(state.variables)))
      print("MESH", trainer.mesh.size)
""")


def test_two_devices_match_one(tmp_path):
  # small_resnet_tiny: max pooling over the exact ties that zero padding makes routes
  # gradients by ulp-level differences, which device counts may change.
  run = subprocess.run(
      [sys.executable, "-c", _TWO_DEVICES, json.dumps(OVERRIDES), "small_resnet_tiny",
       str(tmp_path), "4"], cwd=REPO, env=_env(), capture_output=True, text=True,
      timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "MESH 2" in run.stdout and "MESH 1" in run.stdout
  assert "ERROR: batch_size 15 does not divide evenly over 2 devices" in run.stdout
  loss = lambda d: [r["loss"] for r in progress.read_metrics(tmp_path / d)]
  np.testing.assert_allclose(loss("2"), loss("1"), rtol=1e-5)
  two, one = np.load(tmp_path / "2.npz"), np.load(tmp_path / "1.npz")
  for name in one:
    np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5)
