"""The generation job on the `ci` config: exact quotas, determinism across workers,
resume and retries, validation of damaged datasets, refused inputs.

One uninterrupted in-process run is the reference every other run must match byte
for byte; CLI runs go through subprocesses sharing JAX's persistent compile cache.
"""
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from apache_beam.portability.api import beam_fn_api_pb2
import numpy as np
import pytest

from synthfactory.beam_jobs import generation
from synthfactory.beam_jobs import progress
from synthfactory.beam_jobs import shard_worker
from synthfactory.beam_jobs import worker_logs
from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.datasets import class_plan
from synthfactory.datasets import manifest
from synthfactory.datasets import shards
from synthfactory.tfds_builders import registration
import tiny_checkpoint  # tests/ (pytest.ini's pythonpath)

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"--config={REPO / 'beam_jobs' / 'configs' / 'generate.py'}:ci"
IN_MEMORY = ["--direct_running_mode=in_memory"]


def ci_config(**overrides):
  config = generate_configs.get_config("ci")
  config.update(overrides)
  return config


def files(folder):
  """{relative path: bytes} of every file in a dataset folder (status files too)."""
  folder = pathlib.Path(folder)
  return {str(p.relative_to(folder)): p.read_bytes()
          for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  cache = tmp_path_factory.mktemp("jax_cache")
  return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2",
          "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def cli(module, *args, env):
  return subprocess.run([sys.executable, "-m", f"synthfactory.beam_jobs.{module}",
                         *args], env=env, capture_output=True, text=True, timeout=300,
                        check=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  out = tmp_path_factory.mktemp("reference")
  generation.run(ci_config(), out, beam_args=IN_MEMORY)
  return out


def copy(reference, tmp_path):
  return shutil.copytree(reference, tmp_path / "data")


def test_reference_meets_the_plan(reference):
  m = json.loads((reference / manifest.MANIFEST_FILE).read_text())
  plan = class_plan.ClassPlan.read(reference / manifest.PLAN_FILE)
  assert m["num_records"] == plan.total == 20
  assert [s["num_records"] for s in m["shards"]] == [7, 7, 6]
  feats = shards.features(plan.names, m["image"]["shape"])
  examples = [feats.deserialize_example_np(r) for s in m["shards"]
              for r in shards.read_records(reference / s["file"])]
  plan.check([e["label"] for e in examples], [e["index"] for e in examples])
  assert manifest.problems(reference) == []


def test_two_workers_write_identical_bytes(reference, tmp_path, env):
  out = tmp_path / "two_workers"
  got = cli("generate", CONFIG, f"--output_dir={out}",
            "--direct_running_mode=multi_processing", "--direct_num_workers=2",
            env={**env, "PYTHONHASHSEED": "7"})
  assert got.returncode == 0, got.stderr[-3000:]
  assert files(out) == files(reference)
  # The workers' progress reaches the main log as their own lines, not Beam's protos.
  assert "worker: progress: " in got.stderr, got.stderr[-3000:]
  assert "Worker: severity" not in got.stderr


def test_worker_log_records_are_rewritten_to_their_message():
  beam_logger = logging.getLogger(worker_logs._BEAM_LOGGER)
  worker_logs.install()
  worker_logs.install()   # Idempotent: one filter.
  assert sum(isinstance(f, worker_logs._WorkerLogFilter)
             for f in beam_logger.filters) == 1

  def relogged(message, step="Write", severity="INFO", where="shard_worker.py:70"):
    """A worker's record as Beam's local job service logs it."""
    entry = beam_fn_api_pb2.LogEntry(
        message=message, thread="Thread-3", transform_id=step, log_location=where,
        severity=getattr(beam_fn_api_pb2.LogEntry.Severity, severity))
    return logging.LogRecord(beam_logger.name, logging.INFO, "f.py", 1, "Worker: %s",
                             (str(entry).replace("\n", " "),), None)

  record = relogged('progress: 75/600 images "quoted"\nsecond line')
  assert beam_logger.filters[-1].filter(record)
  assert record.getMessage() == 'worker: progress: 75/600 images "quoted"\nsecond line'
  assert not beam_logger.filters[-1].filter(relogged(
      "No semi_persistent_directory found: User registered objects..."))
  assert not beam_logger.filters[-1].filter(relogged("Control channel established.",
                                                     step=""))   # Harness chatter.
  assert not beam_logger.filters[-1].filter(relogged(
      "Restoring checkpoint", where="/x/orbax/checkpoint/checkpoint_manager.py:1"))
  warning = relogged("Out of disk", step="", severity="WARN")
  assert beam_logger.filters[-1].filter(warning)
  assert warning.getMessage() == "worker: Out of disk"
  other = logging.LogRecord(beam_logger.name, logging.INFO, "f.py", 1, "Job %s", ("x",),
                            None)
  assert beam_logger.filters[-1].filter(other) and other.getMessage() == "Job x"


def test_resume_rewrites_only_damaged_shards(reference, tmp_path):
  data = copy(reference, tmp_path)
  names = [s["file"] for s in json.loads((data / manifest.MANIFEST_FILE).read_text())[
      "shards"]]
  (data / names[0]).unlink()                              # lost,
  damaged = bytearray((data / names[1]).read_bytes())
  damaged[100] ^= 1
  (data / names[1]).write_bytes(bytes(damaged))           # corrupted,
  (data / manifest.MANIFEST_FILE).unlink()                # and the job never finished.
  intact = (data / names[2]).stat().st_mtime_ns
  generation.run(ci_config(), data, beam_args=IN_MEMORY)
  assert files(data) == files(reference)
  assert (data / names[2]).stat().st_mtime_ns == intact   # complete: skipped.


def test_job_progress_counts_the_finished_shards(reference, tmp_path):
  assert generation.job_progress(tmp_path / "nothing") == ""
  data = copy(reference, tmp_path)
  sizes = [s["num_records"] for s in json.loads(
      (data / manifest.MANIFEST_FILE).read_text())["shards"]]
  n, total = len(sizes), sum(sizes)
  assert generation.job_progress(data) == (f"{n}/{n} shards, {total}/{total} images "
                                           "(100%)")
  first = sorted((data / shard_worker.STATUS_DIR).iterdir())[0]
  first.unlink()  # Shard 0 unfinished.
  assert generation.job_progress(data).startswith(
      f"{n - 1}/{n} shards, {total - sizes[0]}/{total} images (")


def test_sigkill_then_rerun_matches_uninterrupted(tmp_path, env):
  # More steps and shards than ci, so the kill lands while shards are being written.
  overrides = ["--config.sampler.steps=100", "--config.num_shards=8"]
  full = tmp_path / "full"
  assert cli("generate", CONFIG, f"--output_dir={full}", *overrides,
             env=env).returncode == 0
  killed = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, "-m", "synthfactory.beam_jobs.generate",
                           CONFIG, f"--output_dir={killed}", *overrides], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  status = killed / shard_worker.STATUS_DIR
  deadline = time.time() + 120
  while time.time() < deadline and not (status.is_dir() and any(status.iterdir())):
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / manifest.MANIFEST_FILE).exists(), "the kill came too late"
  got = cli("generate", CONFIG, f"--output_dir={killed}", *overrides, env=env)
  assert got.returncode == 0, got.stderr[-3000:]
  assert files(killed) == files(full)


def test_repeated_shard_write_leaves_one_correct_shard(reference, tmp_path):
  data = copy(reference, tmp_path)
  spec = manifest.read_json(data / manifest.SPEC_FILE, "spec")
  generator = shard_worker.Generator(spec)
  for _ in range(2):  # A retried bundle that never saw the first attempt's status.
    shutil.rmtree(data / shard_worker.STATUS_DIR)
    (data / shard_worker.STATUS_DIR).mkdir()
    assert shard_worker.write_shard(generator, data, 0)[1]
  assert shard_worker.write_shard(generator, data, 0)[1] is False  # Verified: kept.
  ref = files(reference)
  got = files(data)
  name = shards.shard_filename(spec["name"], spec["split"], 0, spec["num_shards"])
  assert got[name] == ref[name]
  assert not [n for n in got if ".tmp-" in n]


def test_long_shard_logs_progress_inside(reference, tmp_path, monkeypatch):
  data = copy(reference, tmp_path)
  spec = manifest.read_json(data / manifest.SPEC_FILE, "spec")
  shutil.rmtree(data / shard_worker.STATUS_DIR)
  (data / shard_worker.STATUS_DIR).mkdir()
  monkeypatch.setattr(shard_worker, "PROGRESS_SECONDS", 0.0)
  logged = []  # The log calls themselves: other tests change absl's verbosity.
  monkeypatch.setattr(shard_worker.logging, "info",
                      lambda msg, *args: logged.append(msg % args))
  entry, written = shard_worker.write_shard(shard_worker.Generator(spec), data, 0)
  lines = [line for line in logged if "shard ETA" in line]
  n = entry["num_records"]
  assert written and len(lines) == n - 1  # Every record but the last: the done line.
  assert lines[0].startswith(f"shard 1/{spec['num_shards']}: 1/{n} images (")
  name = shards.shard_filename(spec["name"], spec["split"], 0, spec["num_shards"])
  assert files(data)[name] == files(reference)[name]  # Logging changed no byte.


def test_checkpoint_generation_uses_the_real_loader(reference, tmp_path):
  # The ci model's weights saved as an Orbax checkpoint give the same images.
  tiny_checkpoint.save(tmp_path / "run")
  out = tmp_path / "from_checkpoint"
  m = generation.run(ci_config(init="", checkpoint=str(tmp_path / "run")), out,
                     beam_args=IN_MEMORY)
  assert len(m["model"]["checkpoint_sha256"]) == 64
  ref = files(reference)
  for s in m["shards"]:
    assert files(out)[s["file"]] == ref[s["file"]]


def _truncate(data, name):
  path = data / name
  path.write_bytes(path.read_bytes()[:1000])


def _flip(data, name):
  raw = bytearray((data / name).read_bytes())
  raw[200] ^= 0x10
  (data / name).write_bytes(bytes(raw))


def _lie(data, name):
  m = json.loads((data / manifest.MANIFEST_FILE).read_text())
  m["shards"][0]["num_records"] += 1
  (data / manifest.MANIFEST_FILE).write_text(json.dumps(m))


@pytest.mark.parametrize("damage,expected", [
    (_truncate, "cannot be read"),
    (_flip, "SHA-256"),
    (lambda data, name: (data / name).unlink(), "shard file is missing"),
    (_lie, "manifest says 8 records"),
])
def test_validate_names_each_problem(reference, tmp_path, damage, expected):
  data = copy(reference, tmp_path)
  name = shards.shard_filename("synthetic_ci", "train", 0, 3)
  damage(data, name)
  found = manifest.problems(data)
  assert any(expected in p and name in p for p in found), found


def test_validate_cli_exit_codes(reference, tmp_path, env):
  good = cli("validate", f"--data_dir={reference}", env=env)
  assert good.returncode == 0, good.stderr[-2000:]
  data = copy(reference, tmp_path)
  _flip(data, shards.shard_filename("synthetic_ci", "train", 1, 3))
  bad = cli("validate", f"--data_dir={data}", env=env)
  assert bad.returncode != 0 and "SHA-256" in bad.stdout and "problem(s)" in bad.stderr


@pytest.mark.parametrize("multiplier", ["0", "-1", "10.5"])
def test_bad_multiplier_writes_nothing(tmp_path, multiplier):
  config = ci_config()
  config.plan.multiplier = multiplier
  with pytest.raises(class_plan.ClassPlanError, match="Multiplier must be in"):
    generation.run(config, tmp_path / "out", beam_args=IN_MEMORY)
  assert not (tmp_path / "out").exists()


def test_cli_reports_bad_input_in_one_line(tmp_path, env):
  got = cli("generate", CONFIG, f"--output_dir={tmp_path / 'out'}",
            "--config.plan.multiplier=11", env=env)
  assert got.returncode != 0 and "generate: Multiplier must be in (0, 10]" in got.stderr
  assert "Traceback" not in got.stderr and not (tmp_path / "out").exists()


def test_cli_refuses_unknown_variant_and_flags_in_one_line(tmp_path, env):
  got = cli("generate", CONFIG.replace(":ci", ":nope"), "--dry_run", env=env)
  assert got.returncode != 0 and "Traceback" not in got.stderr
  assert got.stderr.strip().splitlines()[-1].endswith(
      "Unknown config variant 'nope'; choose ci, ci_cascade or fashion.")
  got = cli("generate", CONFIG, "--dry_run", "--direct_num_worker=2", env=env)
  assert got.returncode != 0 and "Traceback" not in got.stderr
  assert "generate: Unknown argument(s) --direct_num_worker=2" in got.stderr


def test_missing_checkpoint_and_unknown_variant(tmp_path):
  with pytest.raises(generation.GenerateError, match="does not exist"):
    generation.run(ci_config(init="", checkpoint=str(tmp_path / "nope")),
                   tmp_path / "out")
  assert not (tmp_path / "out").exists()
  with pytest.raises(ValueError, match="Unknown config variant"):
    generate_configs.get_config("imagenet9000")


def test_unwritable_output(tmp_path):
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(generation.GenerateError, match="Cannot write to --output_dir"):
    generation.run(ci_config(), tmp_path / "a_file" / "out")


def test_existing_output_is_refused_without_overwrite(reference, tmp_path):
  data = copy(reference, tmp_path)
  before = files(data)
  with pytest.raises(generation.GenerateError, match="different dataset.*--overwrite"):
    generation.run(ci_config(seed=1), data, beam_args=IN_MEMORY)
  assert files(data) == before                            # Nothing written or lost.
  other = tmp_path / "other"
  other.mkdir()
  (other / "notes.txt").write_text("mine")
  with pytest.raises(generation.GenerateError, match="not this dataset"):
    generation.run(ci_config(), other)
  m = generation.run(ci_config(seed=1), data, overwrite=True, beam_args=IN_MEMORY)
  assert m["seed"] == 1 and manifest.problems(data) == []
  assert files(data)[manifest.PLAN_FILE] == before[manifest.PLAN_FILE]


def test_dry_run_prints_plan_and_cost(tmp_path):
  report = generation.dry_run_report(ci_config(throughput=10.0))
  assert "4 classes, 20 images" in report and "shards: 3 of 6 … 7" in report
  assert "FLOPs" in report and "worker-hours" in report


def test_registered_dataset_reads_through_tfds(reference, tmp_path):
  data = copy(reference, tmp_path)
  m = registration.register(data)
  source = registration.data_source(data)
  labels = [source[i]["label"] for i in range(len(source))]
  assert len(source) == m["num_records"] == 20
  assert np.bincount(labels).tolist() == [5, 5, 5, 5]
  assert source[0]["image"].shape == (8, 8, 3)
  tf_labels = [int(e["label"]) for e in registration.tf_dataset(data)]
  assert sorted(tf_labels) == sorted(labels)
  meta = json.loads((data / "metadata.json").read_text())
  assert meta["seed"] == 0 and meta["class_plan"]["total"] == 20


def test_damaged_dataset_is_not_registered_or_read(reference, tmp_path):
  data = copy(reference, tmp_path)
  name = shards.shard_filename("synthetic_ci", "train", 2, 3)
  _flip(data, name)
  with pytest.raises(registration.DatasetError, match="(?s)fails validation.*SHA-256"):
    registration.register(data)
  assert not (data / "dataset_info.json").exists()
  shutil.copy(reference / name, data / name)
  registration.register(data)
  _truncate(data, name)
  with pytest.raises(registration.DatasetError, match="missing or damaged"):
    registration.data_source(data)
  (data / name).unlink()
  with pytest.raises(registration.DatasetError, match="missing or damaged"):
    registration.tf_dataset(data)


def test_cascade_makes_sr_sized_images_deterministically(tmp_path):
  config = generate_configs.get_config("ci_cascade")
  config.plan.per_class, config.num_shards = 1, 1   # 4 images: keep it quick.
  first = generation.run(config, tmp_path / "a", beam_args=IN_MEMORY)
  assert first["image"]["shape"] == [16, 16, 3]
  assert [s["model"]["init"] for s in first["sr_stages"]] == ["tiny_sr"]
  plan = class_plan.ClassPlan.read(tmp_path / "a" / manifest.PLAN_FILE)
  feats = shards.features(plan.names, first["image"]["shape"])
  images = [feats.deserialize_example_np(r)["image"]
            for r in shards.read_records(tmp_path / "a" / first["shards"][0]["file"])]
  assert len(images) == 4 and all(i.shape == (16, 16, 3) for i in images)
  generation.run(config, tmp_path / "b", beam_args=IN_MEMORY)
  assert files(tmp_path / "b") == files(tmp_path / "a")


def test_cascade_chain_mismatch_fails_before_sampling(tmp_path):
  config = generate_configs.get_config("ci_cascade")
  config.sr_stages = (generate_configs.sr_stage(init="tiny"),)
  with pytest.raises(generation.GenerateError, match="SR stage 1 is a base model"):
    generation.run(config, tmp_path / "out")
  config.sr_stages = (generate_configs.sr_stage(init="tiny_sr"),) * 2
  with pytest.raises(generation.GenerateError, match="SR stage 2 upsamples 8 px"):
    generation.run(config, tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_progress_line_has_count_rate_and_eta():
  now = [0.0]
  p = progress.Progress(100, 4, clock=lambda: now[0])
  assert "ETA unknown" in p.update(25, written=False)  # Skipped: no rate yet.
  now[0] = 5.0
  line = p.update(25, written=True)
  assert "50/100 images (50.0%)" in line and "2/4 shards" in line
  assert "5.0 images/s" in line and "ETA 0m10s for the remaining 50" in line
