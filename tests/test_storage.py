"""gs:// paths for the data factory, against a local GCS emulator (gcp-storage-emulator).

The emulator runs in its own process on 127.0.0.1; the generation job's gs:// output
must match a local run of the same config byte for byte, resume and refuse like a
local folder, validate, and read a checkpoint from gs://.
"""
import hashlib
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from synthfactory.beam_jobs import generation
from synthfactory.beam_jobs.configs import generate as generate_configs
from synthfactory.datasets import manifest
from synthfactory.datasets import shards
from synthfactory.datasets import storage
import tiny_checkpoint  # tests/ (pytest.ini's pythonpath)

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = f"--config={REPO / 'beam_jobs' / 'configs' / 'generate.py'}:ci"
IN_MEMORY = ["--direct_running_mode=in_memory"]
BUCKET = "synthfactory-test"


def ci_config(**overrides):
  config = generate_configs.get_config("ci")
  config.update(overrides)
  return config


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
  """STORAGE_EMULATOR_HOST of a running emulator with bucket BUCKET (env set for
  this module, and for the subprocesses it starts)."""
  try:
    import gcp_storage_emulator  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    pytest.skip("gcp-storage-emulator is not installed (pip install -e .[test])")
  port = _free_port()
  host = f"http://127.0.0.1:{port}"
  proc = subprocess.Popen(
      [sys.executable, "-m", "gcp_storage_emulator", "start", "--host=127.0.0.1",
       f"--port={port}", "--in-memory", "--quiet"],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  saved = dict(os.environ)
  os.environ.update({
      "STORAGE_EMULATOR_HOST": host,
      # No credential probing: no GCE metadata server, anywhere (DESIGN §4).
      "NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:1",
      "GCE_METADATA_IP": "127.0.0.1:1",
      "SYNTHFACTORY_CACHE": str(tmp_path_factory.mktemp("cache"))})
  try:
    import requests  # pylint: disable=g-import-not-at-top
    deadline = time.time() + 30
    while True:
      try:
        requests.get(f"{host}/storage/v1/b", timeout=1)
        break
      except requests.ConnectionError:
        if proc.poll() is not None or time.time() > deadline:
          pytest.skip("gcp-storage-emulator did not start: "
                      f"{proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
        time.sleep(0.1)
    storage._client().create_bucket(BUCKET)  # pylint: disable=protected-access
    yield host
  finally:
    proc.terminate()
    proc.wait(timeout=30)
    os.environ.clear()
    os.environ.update(saved)


def gs(*parts):
  return storage.join(f"gs://{BUCKET}", *parts)


def files(folder):
  """{relative path: bytes} of every file of a local or gs:// folder."""
  return {name: storage.read_bytes(storage.join(folder, name))
          for name in storage.files(folder)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  out = tmp_path_factory.mktemp("reference")
  generation.run(ci_config(), out, beam_args=IN_MEMORY)
  return out


@pytest.fixture(scope="module")
def gcs_dataset(emulator, reference):
  del reference  # Runs first: its compile is shared.
  out = gs("ci")
  generation.run(ci_config(), out, beam_args=IN_MEMORY)
  return out


def test_primitives(emulator, tmp_path):
  base = gs("prims")
  storage.write_bytes(storage.join(base, "a.txt"), b"hello")
  storage.write_bytes(storage.join(base, "sub", "b.bin"), bytes(range(256)) * 4000)
  assert storage.read_bytes(gs("prims/a.txt")) == b"hello"
  assert storage.isfile(gs("prims/a.txt")) and not storage.isdir(gs("prims/a.txt"))
  assert storage.isdir(base) and storage.isdir(gs("prims/sub/"))
  assert not storage.exists(gs("prims/nope")) and not storage.exists(gs("prim"))
  assert storage.listdir(base) == ["a.txt", "sub"]
  assert storage.files(base) == ["a.txt", "sub/b.bin"]
  big = storage.join(base, "sub", "b.bin")
  assert storage.sha256(big) == hashlib.sha256(bytes(range(256)) * 4000).hexdigest()
  with storage.local_copy(big) as local:
    assert pathlib.Path(local).read_bytes() == bytes(range(256)) * 4000
  assert not pathlib.Path(local).exists()
  with pytest.raises(FileNotFoundError):
    storage.read_bytes(gs("prims/nope"))
  # localize: a folder copied once into the cache, again when an object changes.
  first = storage.localize(base)
  assert pathlib.Path(first).name == "prims"
  assert storage.files(first) == ["a.txt", "sub/b.bin"]
  assert storage.localize(base + "/") == first
  storage.write_bytes(storage.join(base, "a.txt"), b"changed")
  second = storage.localize(base)
  assert second != first and pathlib.Path(second, "a.txt").read_bytes() == b"changed"
  # Upload of a local file; delete of an object and of a folder.
  (tmp_path / "f").write_bytes(b"local")
  storage.upload(tmp_path / "f", gs("prims/up"))
  assert storage.read_bytes(gs("prims/up")) == b"local"
  storage.delete(gs("prims/up"))
  assert not storage.exists(gs("prims/up"))
  storage.delete(base)
  assert not storage.exists(base)
  assert storage.absolute("gs://b/x/") == "gs://b/x" and storage.join("gs://b/", "y") == (
      "gs://b/y")


def test_missing_bucket_is_named_with_the_fix(emulator, tmp_path):
  with pytest.raises(storage.StorageError,
                     match="gs://no-such-bucket does not exist.*buckets create"):
    storage.listdir("gs://no-such-bucket/data")
  with pytest.raises(storage.StorageError, match="does not exist"):
    storage.write_bytes("gs://no-such-bucket/x", b"x")
  with pytest.raises(generation.GenerateError, match="gs://no-such-bucket"):
    generation.run(ci_config(), "gs://no-such-bucket/out", beam_args=IN_MEMORY)


def test_unreachable_endpoint_and_permission_denied(emulator, monkeypatch):
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_free_port()}")
  monkeypatch.setenv("SYNTHFACTORY_GCS_RETRY_S", "1")
  with pytest.raises(storage.StorageError, match="unreachable.*STORAGE_EMULATOR_HOST"):
    storage.read_bytes(gs("x"))
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
  from google.api_core import exceptions  # pylint: disable=g-import-not-at-top

  class Denied:
    def download_as_bytes(self, **_):
      raise exceptions.Forbidden("caller does not have storage.objects.get access")

  monkeypatch.setattr(storage, "_blob", lambda path: Denied())
  with pytest.raises(storage.StorageError, match=f"{gs('x')}: permission denied.*"
                     "roles/storage"):
    storage.read_bytes(gs("x"))


def test_gcs_output_is_byte_identical_to_local(gcs_dataset, reference):
  got, want = files(gcs_dataset), files(reference)
  assert sorted(got) == sorted(want)
  assert got == want
  assert manifest.problems(gcs_dataset) == []


def test_resume_on_gcs_rewrites_only_the_lost_shard(emulator, reference):
  data = gs("resume")
  storage.upload_dir(reference, data)
  names = [s["file"] for s in manifest.read_json(
      storage.join(data, manifest.MANIFEST_FILE), "manifest")["shards"]]
  storage.delete(storage.join(data, names[0]))
  storage.delete(storage.join(data, manifest.MANIFEST_FILE))
  kept = storage._blob(storage.join(data, names[1]))  # pylint: disable=protected-access
  kept.reload()
  generation.run(ci_config(), data, beam_args=IN_MEMORY)
  assert files(data) == files(reference)
  again = storage._blob(storage.join(data, names[1]))  # pylint: disable=protected-access
  again.reload()
  assert again.generation == kept.generation   # Complete and verified: not uploaded.


def test_existing_gcs_dataset_is_refused_without_overwrite(emulator, reference):
  data = gs("refuse")
  storage.upload_dir(reference, data)
  before = files(data)
  with pytest.raises(generation.GenerateError, match="different dataset.*--overwrite"):
    generation.run(ci_config(seed=1), data, beam_args=IN_MEMORY)
  assert files(data) == before
  storage.write_bytes(gs("other", "notes.txt"), b"mine")
  with pytest.raises(generation.GenerateError, match="not this dataset"):
    generation.run(ci_config(), gs("other"))
  m = generation.run(ci_config(seed=1), data, overwrite=True, beam_args=IN_MEMORY)
  assert m["seed"] == 1 and manifest.problems(data) == []


def _cli(module, *args):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
  return subprocess.run([sys.executable, "-m", f"synthfactory.beam_jobs.{module}",
                         *args], env=env, capture_output=True, text=True, timeout=300,
                        check=False)


def test_generate_and_validate_cli_on_gcs(emulator, reference):
  # Two worker processes: the emulator settings reach them through the environment.
  data = gs("cli")
  made = _cli("generate", CONFIG, f"--output_dir={data}",
              "--direct_running_mode=multi_processing", "--direct_num_workers=2")
  assert made.returncode == 0, made.stderr[-3000:]
  assert files(data) == files(reference)
  good = _cli("validate", f"--data_dir={data}")
  assert good.returncode == 0 and "is complete" in good.stdout, good.stderr[-2000:]
  name = shards.shard_filename("synthetic_ci", "train", 1, 3)
  storage.delete(storage.join(data, name))
  bad = _cli("validate", f"--data_dir={data}")
  assert bad.returncode != 0 and f"{name}: shard file is missing" in bad.stdout
  missing = _cli("validate", "--data_dir=gs://no-such-bucket/data")
  assert missing.returncode != 0 and "does not exist" in missing.stderr
  assert "Traceback" not in missing.stderr


def test_checkpoint_from_gcs(emulator, reference, tmp_path):
  # The ci model's weights as an Orbax checkpoint on gs:// give the same images.
  tiny_checkpoint.save(tmp_path / "run")
  storage.upload_dir(tmp_path / "run", gs("runs", "tiny"))
  out = gs("from_checkpoint")
  m = generation.run(ci_config(init="", checkpoint=gs("runs", "tiny")), out,
                     beam_args=IN_MEMORY)
  assert m["model"]["checkpoint"] == gs("runs", "tiny", "checkpoints")
  assert m["model"]["checkpoint_sha256"] == manifest.directory_sha256(
      tmp_path / "run" / "checkpoints")
  ref = files(reference)
  for s in m["shards"]:
    assert storage.read_bytes(storage.join(out, s["file"])) == ref[s["file"]]
  with pytest.raises(generation.GenerateError, match="does not exist"):
    generation.run(ci_config(init="", checkpoint=gs("runs", "nope")), gs("never"))
