"""The sampler sweep: its grid, deterministic sampling, metrics and choice, run on a
freshly initialised tiny U-Net with a small random-feature extractor."""
import json

from absl import app
import jax
import numpy as np
import pytest

from synthfactory.evaluation import feature_extractor
from synthfactory.evaluation import reference_stats
from synthfactory.evaluation import sampler_sweep
from synthfactory.models import diffusion_model
from synthfactory.models import unet


def _extractor():
  rng = np.random.default_rng(0)
  w, v = rng.normal(size=(8 * 8 * 3, 16)) / 14, rng.normal(size=(16, 4))

  def fn(images):
    x = images.astype(np.float32) / 127.5 - 1 if images.dtype == np.uint8 else images
    features = np.tanh(x.reshape(len(x), -1) @ w)
    return {"features": features, "logits": features @ v}
  return feature_extractor.FeatureExtractor("toy", fn, batch_size=7)


def _reference(extractor, n=64):
  images = np.random.default_rng(1).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
  moments = reference_stats.RunningMoments()
  moments.update(extractor.fn(images)["features"])
  return moments.stats()


def test_grid_is_every_combination_in_order():
  settings = sampler_sweep.grid(["ddim", "dpm_solver_pp"], ["4", "8"], ["1", "2.5"])
  assert len(settings) == 8
  assert (settings[0].name, settings[0].steps, settings[0].guidance) == ("ddim", 4, 1.0)
  assert (settings[-1].name, settings[-1].steps, settings[-1].guidance) == (
      "dpm_solver_pp", 8, 2.5)


def test_grid_limits_only_guided_settings_to_each_interval():
  settings = sampler_sweep.grid(["dpm_solver_pp"], ["12"], ["1", "2"],
                                ["all", "0.3:6"])
  assert [(c.guidance, c.guidance_interval) for c in settings] == [
      (1.0, ()), (2.0, ()), (2.0, (0.3, 6.0))]
  with pytest.raises(app.UsageError, match="neither 'all' nor 'lo:hi'"):
    sampler_sweep.grid(["ddim"], ["4"], ["2"], ["0.3-6"])


def test_sweep_measures_every_setting_deterministically():
  model = diffusion_model.DiffusionModel.from_config(unet.unet_config("tiny"))
  params = model.init(jax.random.PRNGKey(0))
  extractor = _extractor()
  reference = _reference(extractor)
  settings = sampler_sweep.grid(["ddim"], ["2", "3"], ["1", "2"])
  rows = sampler_sweep.sweep(model, params, settings, extractor, reference,
                             per_class=3, seed=0, batch_size=5)
  assert [r["sampler"]["steps"] for r in rows] == [2, 2, 3, 3]
  assert [r["evaluations_per_image"] for r in rows] == [2, 4, 3, 6]
  for row in rows:
    assert np.isfinite(row["FD-toy"]) and row["FD-toy"] >= 0
    assert 0 <= row["label_agreement"] <= 1 and row["images_per_s"] > 0
  again = sampler_sweep.sweep(model, params, settings[:1], extractor, reference,
                              per_class=3, seed=0, batch_size=5)
  assert again[0]["FD-toy"] == rows[0]["FD-toy"]
  other_seed = sampler_sweep.sweep(model, params, settings[:1], extractor, reference,
                                   per_class=3, seed=1, batch_size=5)
  assert other_seed[0]["FD-toy"] != rows[0]["FD-toy"]


def test_sample_all_covers_every_class_and_index():
  calls = []

  def sample_fn(params, keys, labels):
    calls.append(len(labels))
    return np.zeros((len(labels), 2, 2, 1), np.float32) + labels[:, None, None, None] / 10
  images, labels = sampler_sweep.sample_all(sample_fn, None, 3, 4, 0, 5)
  assert calls == [5, 5, 5]  # 12 items in fixed batches of 5, the last padded.
  assert images.shape == (12, 2, 2, 1) and images.dtype == np.uint8
  np.testing.assert_array_equal(labels, np.repeat(np.arange(3), 4))


def test_choose_takes_the_lowest_fd_then_the_cheapest():
  row = lambda fd, steps, w: {"FD-x": fd, "sampler": {"steps": steps, "guidance": w}}
  rows = [row(3.0, 10, 1.0), row(2.0, 20, 2.0), row(2.0, 10, 2.0), row(2.5, 5, 1.0)]
  assert sampler_sweep.choose(rows, "FD-x") is rows[2]
  # Guided on fewer steps (its recorded evaluations): cheaper at the same FD.
  rows.append({**row(2.0, 10, 2.0), "evaluations_per_image": 13})
  assert sampler_sweep.choose(rows, "FD-x") is rows[4]


def _row(fd, agreement, steps, w):
  return {"FD-x": fd, "label_agreement": agreement,
          "sampler": {"name": "ddim", "steps": steps, "guidance": w}}


def test_choose_with_a_margin_takes_the_best_agreement_near_the_lowest_fd():
  rows = [_row(2.0, 0.80, 12, 2.0), _row(2.08, 0.88, 12, 3.0), _row(2.5, 0.95, 12, 5.0),
          _row(2.08, 0.88, 6, 3.0)]
  assert sampler_sweep.choose(rows, "FD-x") is rows[0]
  assert sampler_sweep.choose(rows, "FD-x", 0.05) is rows[3]   # Tie: fewer steps.
  assert sampler_sweep.choose(rows, "FD-x", 0.30) is rows[2]
  with pytest.raises(ValueError, match="negative"):
    sampler_sweep.choose(rows, "FD-x", -0.1)
  assert sampler_sweep.rule("FD-x", 0.05) == (
      "highest label agreement within 5% of the lowest FD-x")


def test_extend_samples_only_new_settings_once_a_recorded_row_reproduces():
  def row(config, fd, agreement=0.9):
    return {"sampler": config.to_dict(), "FD-x": fd, "label_agreement": agreement}
  plain, guided = sampler_sweep.grid(["dpm_solver_pp"], ["12"], ["1", "2"])
  recorded = {"per_class": 50, "seed": 0, "reference": "r:test", "command": "sweep A",
              "sweep": [row(plain, 40.0), row(guided, 45.0)]}
  opts = {"per_class": 50, "seed": 0, "reference": "r:test"}
  settings = sampler_sweep.grid(["dpm_solver_pp"], ["12"], ["1", "2"],
                                ["all", "0.3:6"])
  measured = []

  def measure(configs, fd=40.0):
    measured.extend(configs)
    return [row(c, fd) for c in configs]
  new = sampler_sweep.extension(recorded, settings, opts, measure)
  assert [c.guidance_interval for c in new] == [(0.3, 6.0)]
  assert measured == [plain]  # The cheapest recorded setting, re-measured first.
  with pytest.raises(app.UsageError, match="differ from the recorded sweep's"):
    sampler_sweep.extension(recorded, settings, opts,
                            lambda configs: measure(configs, fd=41.0))
  with pytest.raises(app.UsageError, match="per_class=50, this one 100"):
    sampler_sweep.extension(recorded, settings, {**opts, "per_class": 100}, measure)


def test_rechoose_applies_a_new_rule_to_a_recorded_sweep(tmp_path):
  recorded = {"sampler": _row(2.0, 0.8, 12, 2.0)["sampler"], "chosen_by": "lowest FD-x",
              "extractor": "x", "command": "sweep --per_class=50",
              "sweep": [_row(2.0, 0.80, 12, 2.0), _row(2.08, 0.88, 12, 3.0)]}
  path = tmp_path / "sweep.json"
  path.write_text(json.dumps(recorded))
  result, metric = sampler_sweep.rechoose(path, 0.05)
  assert metric == "FD-x" and result["sampler"]["guidance"] == 3.0
  assert result["fd_margin"] == 0.05 and result["sweep"] == recorded["sweep"]
  assert result["sweep_command"] == "sweep --per_class=50"   # The sampling's command.
  (tmp_path / "bad.json").write_text("{}")
  with pytest.raises(app.UsageError, match="not a sampler sweep"):
    sampler_sweep.rechoose(tmp_path / "bad.json", 0.05)
