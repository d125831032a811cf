"""Progress lines with images done / total, rate and ETA.

Beam counters are only summed by the runner (and shown on Dataflow's page), so each
worker also logs its own view: the images of the shards it finished, against the
job's total. On one worker (DirectRunner in memory) that is the job's progress; with
W workers each line covers about 1/W of the work, and the ETA is this worker's
estimate for the whole remainder at its own rate, so divide it by W.
"""
import time


def duration(seconds):
  """"1h02m03s", or "2m03s" under an hour."""
  h, rest = divmod(int(round(seconds)), 3600)
  if h:
    return f"{h}h{rest // 60:02d}m{rest % 60:02d}s"
  return f"{rest // 60}m{rest % 60:02d}s"


class Progress:
  """Counts finished shards; `update` returns the log line of the latest one."""

  def __init__(self, total_images, total_shards, clock=time.monotonic):
    self.total_images, self.total_shards = total_images, total_shards
    self._clock = clock
    self._start = clock()
    self.images = self.shards = 0
    self._sampled = 0  # Images this worker sampled (not skipped), for the rate.

  def update(self, num_images, written):
    """One shard of `num_images` done; `written` False when it was already complete
    (skipped: it counts as done but not towards the sampling rate)."""
    self.images += num_images
    self.shards += 1
    self._sampled += num_images if written else 0
    seconds = max(self._clock() - self._start, 1e-9)
    rate = self._sampled / seconds
    left = max(self.total_images - self.images, 0)
    eta = duration(left / rate) if rate > 0 else "unknown"
    return (f"progress: {self.images}/{self.total_images} images "
            f"({100 * self.images / max(self.total_images, 1):.1f}%) in "
            f"{self.shards}/{self.total_shards} shards by this worker, "
            f"{rate:.1f} images/s, ETA {eta} for the remaining {left} at this rate "
            "(several workers: divide by their number)")
