"""The machine a run ran on, as benchmarks and studies record it next to their numbers.

  record = {..., "machine": machine.describe()}

Numbers measured on a 2-core laptop and on a 16-core server differ by more than any
change they compare, so every committed result names its CPU model (platform.processor()
says only "x86_64" or nothing on Linux), cores and memory.
"""
import os
import pathlib
import platform


def cpu_model(cpuinfo):
  """The first "model name" of /proc/cpuinfo's text (None on CPUs that list none)."""
  return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
               if line.startswith("model name")), None)


def _read(path):
  try:
    return pathlib.Path(path).read_text()
  except OSError:  # Not Linux: fall back to what platform knows.
    return ""


def describe():
  """cpus, memory_gib (None when /proc/meminfo is absent), processor, python, platform."""
  mem_kb = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                 if line.startswith("MemTotal")), None)
  return {"cpus": os.cpu_count(),
          "memory_gib": round(mem_kb / 2**20, 1) if mem_kb else None,
          "processor": (cpu_model(_read("/proc/cpuinfo")) or platform.processor()
                        or platform.machine()),
          "python": platform.python_version(), "platform": platform.platform()}
