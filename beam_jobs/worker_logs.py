"""Readable worker logs for the DirectRunner's worker processes.

With `--direct_running_mode=multi_processing` each worker's log records reach the main
process over Beam's logging service, which re-logs every one as
"Worker: <the whole LogEntry proto on one line>" (timestamps, ids, file paths):
a progress line becomes 400 characters with the message buried in it. `install()`
rewrites those records to "worker: <message>" at the worker's own severity
and drops what every worker repeats and that says nothing about this job: the SDK
harness's start-up chatter (info lines outside any step of the pipeline), Orbax's info
lines and two harmless start-up warnings.
"""
import logging

from apache_beam.portability.api import beam_fn_api_pb2
from google.protobuf import text_format

_BEAM_LOGGER = "apache_beam.runners.portability.local_job_service"
# Harmless per-worker start-up noise: Beam's note that no staging directory exists
# (nothing is staged locally) and Orbax's that the shipped checkpoint is read-only.
_DROPPED = ("No semi_persistent_directory found", "Given directory is read only")


def worker_entry(record):
  """The worker's LogEntry of a re-logged record, or None for other records."""
  if record.msg != "Worker: %s" or not isinstance(record.args, tuple) \
      or len(record.args) != 1:
    return None
  entry = beam_fn_api_pb2.LogEntry()
  try:
    text_format.Parse(record.args[0], entry)
  except text_format.ParseError:
    return None
  return entry


def _is_noise(entry):
  info = entry.severity < beam_fn_api_pb2.LogEntry.Severity.WARN
  # Info lines of the SDK harness (outside any step) and of Orbax (two dozen per
  # checkpoint load; checkpoints.quiet_orbax_logs does the same in the main process).
  if info and (not entry.transform_id or "/orbax/" in entry.log_location):
    return True
  return any(noise in entry.message for noise in _DROPPED)


class _WorkerLogFilter(logging.Filter):

  def filter(self, record):
    entry = worker_entry(record)
    if entry is None:
      return True
    if _is_noise(entry):
      return False
    record.msg, record.args = "worker: %s", (entry.message,)
    return True


def install():
  """Adds the filter to Beam's job-service logger (once per process)."""
  logger = logging.getLogger(_BEAM_LOGGER)
  if not any(isinstance(f, _WorkerLogFilter) for f in logger.filters):
    logger.addFilter(_WorkerLogFilter())
