"""Progress of a training run: a log line and a JSON line every `log_every` steps.

Metrics stay on the device between log points (fetching them every step would make the
host wait for each step); the window's mean is what gets logged.
"""
import datetime
import json
import pathlib
import time

from absl import logging
import jax
import numpy as np


class Progress:
  """Logs step, loss, steps/s, images/s and ETA; appends metrics to metrics.jsonl."""

  def __init__(self, workdir, *, total_steps, batch_size, log_every, start_step=0):
    self.path = pathlib.Path(workdir) / "metrics.jsonl"
    self._total, self._batch_size, self._every = total_steps, batch_size, log_every
    self._window, self._first = [], True
    self._last_step, self._last_time = start_step, time.perf_counter()

  def update(self, step, metrics):
    """Records the metrics of the step that brought the run to `step` steps done."""
    self._window.append(metrics)
    flush = step % self._every == 0 or step == self._total
    if self._first:  # Mostly compilation: report it, and keep it out of the rates.
      self._first = False
      jax.block_until_ready(metrics)
      logging.info("first step done in %.1f s (compilation included)",
                   time.perf_counter() - self._last_time)
      if not flush:
        self._last_step, self._last_time = step, time.perf_counter()
    if flush:
      self._flush(step)

  def _flush(self, step):
    window = jax.device_get(self._window)  # Waits for the steps to finish.
    now = time.perf_counter()
    means = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    record = {"step": step, **means, "steps_per_sec": rate,
              "images_per_sec": rate * self._batch_size}
    eta = datetime.timedelta(seconds=round((self._total - step) / rate))
    logging.info("step %d/%d  loss %.4f  %.2f steps/s  %.1f images/s  ETA %s", step,
                 self._total, means["loss"], rate, record["images_per_sec"], eta)
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    self._window, self._last_step, self._last_time = [], step, now


def read_metrics(workdir):
  """The records of metrics.jsonl, one per step: a step that a resumed run
  repeated keeps its last record."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  by_step = {}
  for line in path.read_text().splitlines():
    record = json.loads(line)
    by_step[record["step"]] = record
  return [by_step[s] for s in sorted(by_step)]
