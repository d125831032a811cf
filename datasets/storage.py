"""Paths that are local or `gs://bucket/prefix`: the few operations datasets need.

A path is a str (or os.PathLike for local files). Local paths use the file system;
`gs://` paths use google-cloud-storage, whose client is created on first use and
honours STORAGE_EMULATOR_HOST (then with anonymous credentials, so no metadata
server is asked). GCS has no folders: a "folder" is the prefix `<path>/` of objects.

Writes are atomic for both: a local file is written under a temporary name in its
folder and renamed; a GCS object appears only when its upload completes, so the
finished bytes go straight to the final name.

Failures of GCS raise StorageError naming the path and the fix (missing bucket,
permission denied, unreachable endpoint, no credentials). Connection problems are
retried for SYNTHFACTORY_GCS_RETRY_S seconds (default 120), then reported.
"""
import contextlib
import hashlib
import os
import pathlib
import shutil
import tempfile
import uuid

_READ_CHUNK = 1 << 20
_clients = {}


class StorageError(OSError):
  """A GCS path cannot be used: its message names the path and the fix."""


def is_gcs(path):
  return str(path).startswith("gs://")


def _split(path):
  """gs://bucket/a/b → ("bucket", "a/b")."""
  bucket, _, key = str(path)[len("gs://"):].partition("/")
  if not bucket:
    raise StorageError(f"{path}: no bucket name; write gs://<bucket>/<prefix>.")
  return bucket, key.strip("/")


def absolute(path):
  """A canonical form: an absolute local path, or gs://bucket/key without a
  trailing slash."""
  if is_gcs(path):
    bucket, key = _split(path)
    return f"gs://{bucket}/{key}" if key else f"gs://{bucket}"
  return str(pathlib.Path(path).absolute())


def join(base, *parts):
  if is_gcs(base):
    return "/".join([str(base).rstrip("/")] + [str(p).strip("/") for p in parts])
  return str(pathlib.Path(base).joinpath(*parts))


def basename(path):
  return str(path).rstrip("/").rsplit("/", 1)[-1]


def _client():
  """One client per process (Beam workers may fork) and emulator setting."""
  key = (os.getpid(), os.environ.get("STORAGE_EMULATOR_HOST"))
  if key not in _clients:
    from google.cloud import storage  # pylint: disable=g-import-not-at-top
    try:
      if key[1]:
        from google.auth import credentials  # pylint: disable=g-import-not-at-top
        _clients[key] = storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "emulator"),
            credentials=credentials.AnonymousCredentials())
      else:
        _clients[key] = storage.Client()
    except Exception as e:  # google.auth raises DefaultCredentialsError and kin.
      raise StorageError(
          f"Cannot create a Google Cloud Storage client ({type(e).__name__}: {e}). "
          "Fix: run `gcloud auth application-default login` (or set "
          "GOOGLE_APPLICATION_CREDENTIALS), or set STORAGE_EMULATOR_HOST for an "
          "emulator.") from e
  return _clients[key]


def _retry():
  from google.cloud.storage import retry  # pylint: disable=g-import-not-at-top
  return retry.DEFAULT_RETRY.with_timeout(
      float(os.environ.get("SYNTHFACTORY_GCS_RETRY_S", "120")))


@contextlib.contextmanager
def _gcs(path, doing):
  """Turns the GCS client's failures into a StorageError naming path and fix.

  A missing object is FileNotFoundError, as for a local file."""
  from google.api_core import exceptions as api  # pylint: disable=g-import-not-at-top
  import requests  # pylint: disable=g-import-not-at-top
  try:
    yield
  except StorageError:
    raise
  except api.NotFound as e:
    bucket, _ = _split(path)
    if not _bucket_exists(bucket):
      raise StorageError(f"Cannot {doing} {path}: bucket gs://{bucket} does not exist. "
                         f"Fix: create it (gcloud storage buckets create "
                         f"gs://{bucket}) or correct the path.") from e
    raise FileNotFoundError(f"No such object: {path}") from e
  except (api.Forbidden, api.Unauthorized) as e:
    raise StorageError(f"Cannot {doing} {path}: permission denied ({e.message}). "
                       "Fix: grant this account access to the bucket (e.g. "
                       "roles/storage.objectAdmin) or use other credentials "
                       "(gcloud auth application-default login).") from e
  except (api.RetryError, api.ServiceUnavailable, requests.ConnectionError,
          requests.Timeout) as e:
    endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or "storage.googleapis.com"
    raise StorageError(f"Cannot {doing} {path}: the storage endpoint {endpoint} is "
                       f"unreachable ({type(e).__name__}: {str(e)[:200]}). Fix: check "
                       "the network, or STORAGE_EMULATOR_HOST if you use an "
                       "emulator.") from e


def _bucket_exists(bucket):
  try:
    return _client().bucket(bucket).exists(retry=_retry())
  except Exception:  # pylint: disable=broad-except  (the caller reports the error)
    return True


def _blob(path):
  bucket, key = _split(path)
  return _client().bucket(bucket).blob(key)


def _list(path, delimiter=None, max_results=None):
  """Blob iterator of the objects under folder `path`."""
  bucket, key = _split(path)
  return _client().list_blobs(bucket, prefix=f"{key}/" if key else "",
                              delimiter=delimiter, max_results=max_results,
                              retry=_retry())


def isdir(path):
  if not is_gcs(path):
    return os.path.isdir(path)
  with _gcs(path, "list"):
    return next(iter(_list(path, max_results=1)), None) is not None


def isfile(path):
  if not is_gcs(path):
    return os.path.isfile(path)
  if not _split(path)[1]:
    return False
  with _gcs(path, "read"):
    return _blob(path).exists(retry=_retry())


def exists(path):
  return isfile(path) or isdir(path)


def listdir(path):
  """Sorted names of the files and folders directly in folder `path`."""
  if not is_gcs(path):
    return sorted(os.listdir(path))
  with _gcs(path, "list"):
    blobs = _list(path, delimiter="/")
    names = [basename(b.name) for b in blobs]
    names += [basename(p) for p in blobs.prefixes]
  return sorted(set(names))


def files(path):
  """Sorted paths, relative to folder `path`, of every file below it."""
  if not is_gcs(path):
    root = pathlib.Path(path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
  _, key = _split(path)
  with _gcs(path, "list"):
    return sorted(b.name[len(key) + 1 if key else 0:] for b in _list(path))


def read_bytes(path):
  if not is_gcs(path):
    return pathlib.Path(path).read_bytes()
  with _gcs(path, "read"):
    return _blob(path).download_as_bytes(retry=_retry())


def download(path, local_file):
  """Copies file `path` to the local file `local_file`."""
  if not is_gcs(path):
    shutil.copyfile(path, local_file)
    return
  with _gcs(path, "read"):
    _blob(path).download_to_filename(str(local_file), retry=_retry())


class _Hasher:
  """A file-like sink that only hashes: GCS streams into it, nothing hits disk."""

  def __init__(self):
    self.digest = hashlib.sha256()

  def write(self, data):
    self.digest.update(data)


def sha256(path):
  """SHA-256 (hex) of a file's bytes."""
  if not is_gcs(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(_READ_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()
  sink = _Hasher()
  with _gcs(path, "read"):
    _blob(path).download_to_file(sink, retry=_retry())
  return sink.digest.hexdigest()


def _local_tmp(path):
  path = pathlib.Path(path)
  return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")  # Unique per writer.


def write_bytes(path, data):
  """Writes a whole file atomically (see the module docstring)."""
  if is_gcs(path):
    with _gcs(path, "write"):
      # Uploads of finished bytes are idempotent, so retrying them is safe.
      _blob(path).upload_from_string(data, retry=_retry())
    return
  tmp = _local_tmp(path)
  try:
    tmp.write_bytes(data)
    tmp.replace(path)
  finally:
    tmp.unlink(missing_ok=True)


def upload(local_file, path):
  """Copies a finished local file to `path`, atomically."""
  if is_gcs(path):
    with _gcs(path, "write"):
      _blob(path).upload_from_filename(str(local_file), retry=_retry())
    return
  tmp = _local_tmp(path)
  try:
    shutil.copyfile(local_file, tmp)
    tmp.replace(path)
  finally:
    tmp.unlink(missing_ok=True)


def upload_dir(local_dir, path):
  """Copies every file under a local folder to folder `path` (e.g. a checkpoint)."""
  root = pathlib.Path(local_dir)
  for f in sorted(p for p in root.rglob("*") if p.is_file()):
    target = join(path, *f.relative_to(root).parts)
    if not is_gcs(path):
      makedirs(os.path.dirname(target))
    upload(f, target)


def makedirs(path):
  """Creates a folder (and its parents); GCS needs none."""
  if not is_gcs(path):
    os.makedirs(path, exist_ok=True)


def delete(path):
  """Deletes a file, or a folder with everything in it; absent is fine."""
  if not is_gcs(path):
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.unlink(path)
    return
  with _gcs(path, "delete"):
    blobs = list(_list(path)) if _split(path)[1] else []
    blob = _blob(path) if _split(path)[1] else None
    if blob is not None and blob.exists(retry=_retry()):
      blobs.append(blob)
    for b in blobs:
      b.delete(retry=_retry())


@contextlib.contextmanager
def local_copy(path):
  """Yields a local path holding file `path`'s bytes (itself if local); a GCS
  file is downloaded to a temporary folder, removed on exit."""
  if not is_gcs(path):
    yield str(path)
    return
  with tempfile.TemporaryDirectory(prefix="synthfactory-") as tmp:
    local = os.path.join(tmp, basename(path))
    download(path, local)
    yield local


def cache_dir():
  return os.environ.get("SYNTHFACTORY_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "synthfactory"))


def localize(uri, cache=None):
  """A local path holding `uri` (a file or folder): itself if local, else a copy
  under `cache` (default cache_dir()/gcs/<hash>/<name>).

  The hash covers the uri and each object's name, size and CRC32C, so a changed
  object is fetched again; a copy is downloaded to a temporary folder and renamed
  into place, so concurrent workers never use a half-downloaded one.
  """
  if not is_gcs(uri):
    return str(uri)
  uri = absolute(uri)
  with _gcs(uri, "list"):
    blobs = list(_list(uri))
    single = not blobs and isfile(uri)
    if single:
      blob = _blob(uri)
      blob.reload(retry=_retry())
      blobs = [blob]
  if not blobs:
    raise FileNotFoundError(f"Nothing at {uri}: no object and no folder of that name.")
  digest = hashlib.sha256(uri.encode())
  for b in blobs:
    digest.update(f"\0{b.name}\0{b.size}\0{b.crc32c}".encode())
  folder = pathlib.Path(cache or cache_dir()) / "gcs" / digest.hexdigest()[:24]
  dest = folder / basename(uri)
  if dest.exists():
    return str(dest)
  folder.mkdir(parents=True, exist_ok=True)
  tmp = _local_tmp(dest)
  try:
    if single:
      download(uri, tmp)
    else:
      _, key = _split(uri)
      for b in blobs:
        local = tmp / b.name[len(key) + 1 if key else 0:]
        local.parent.mkdir(parents=True, exist_ok=True)
        download(f"gs://{b.bucket.name}/{b.name}", local)
    try:
      os.replace(tmp, dest)
    except OSError:  # Another process put the same copy there first.
      if not dest.exists():
        raise
  finally:
    if tmp.is_dir():
      shutil.rmtree(tmp)
    elif tmp.exists():
      tmp.unlink()
  return str(dest)
