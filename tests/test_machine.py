"""pipelines/machine.py: what benchmarks and studies record about the machine."""
import os

from synthfactory.pipelines import machine


def test_cpu_model_takes_the_first_model_name():
  cpuinfo = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\n"
             "model name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: other\n")
  assert machine.cpu_model(cpuinfo) == "AMD EPYC 7B13"
  assert machine.cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n") is None


def test_describe_reads_cpuinfo_and_meminfo(monkeypatch):
  files = {"/proc/cpuinfo": "processor\t: 0\nmodel name\t: Test CPU 9000\n",
           "/proc/meminfo": "MemTotal:       24641536 kB\nMemFree: 1 kB\n"}
  monkeypatch.setattr(machine, "_read", lambda path: files.get(path, ""))
  got = machine.describe()
  assert got["processor"] == "Test CPU 9000"
  assert got["memory_gib"] == 23.5 and got["cpus"] == os.cpu_count()
  assert set(got) == {"cpus", "memory_gib", "processor", "python", "platform"}


def test_describe_without_proc_falls_back_to_platform(monkeypatch):
  monkeypatch.setattr(machine, "_read", lambda path: "")
  monkeypatch.setattr(machine.platform, "processor", lambda: "")
  monkeypatch.setattr(machine.platform, "machine", lambda: "arm64")
  got = machine.describe()
  assert got["processor"] == "arm64" and got["memory_gib"] is None
