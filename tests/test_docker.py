"""The Dockerfiles cannot drift: Beam SDK = installed apache-beam, the package installed."""
import ast
import importlib.metadata
import pathlib
import re

import packaging.requirements
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
BEAM_WORKERS = [p for p in DOCKERFILES if p.name.startswith("beam_worker_")]


def _setup_constant(name):
  """The value of a top-level constant of setup.py (read, not run)."""
  tree = ast.parse((ROOT / "setup.py").read_text())
  for node in tree.body:
    if isinstance(node, ast.Assign) and node.targets[0].id == name:
      return ast.literal_eval(node.value)
  raise AssertionError(f"setup.py has no {name}")


def _packaged_folders():
  """The folders setup.py packages (its _PACKAGES, plus the import root's)."""
  return set(_setup_constant("_PACKAGES")) | {"synthfactory_root"}


def test_all_images_are_there():
  assert {p.name for p in DOCKERFILES} == {
      "beam_worker_gpu.Dockerfile", "beam_worker_tpu.Dockerfile",
      "training.Dockerfile"}
  assert (ROOT / "docker" / "README.md").read_text().rstrip().endswith(
      "built and run: not on this machine.")


@pytest.mark.parametrize("path", BEAM_WORKERS, ids=lambda p: p.name)
def test_beam_sdk_matches_installed_apache_beam(path):
  tags = re.findall(r"^FROM\s+apache/beam_python(\d+\.\d+)_sdk:(\S+)",
                    path.read_text(), re.M)
  version = importlib.metadata.version("apache-beam")
  assert tags and all(tag == version for _, tag in tags), (
      f"{path.name} uses Beam SDK {tags}, the installed apache-beam is {version}: "
      "bump the FROM tag and setup.py's apache-beam pin together.")
  assert all(python == "3.11" for python, _ in tags)


def _setup_requirement(name):
  for spec in _setup_constant("_INSTALL_REQUIRES"):
    requirement = packaging.requirements.Requirement(spec)
    if requirement.name == name:
      return requirement
  raise AssertionError(f"setup.py does not require {name}")


@pytest.mark.parametrize("path", BEAM_WORKERS, ids=lambda p: p.name)
def test_setup_pins_the_beam_release_of_the_sdk_image(path):
  """A new apache-beam on PyPI must not reach the launcher while the workers' image
  stays on the old SDK: setup.py admits the image's release and no later one."""
  tag = re.search(r"^FROM\s+apache/beam_python\d+\.\d+_sdk:(\S+)", path.read_text(),
                  re.M).group(1)
  major, minor, _ = (int(part) for part in tag.split("."))
  allowed = _setup_requirement("apache-beam").specifier
  assert allowed.contains(tag), f"setup.py's apache-beam {allowed} excludes {tag}"
  assert not allowed.contains(f"{major}.{minor + 1}.0"), (
      f"setup.py's apache-beam {allowed} admits releases after {path.name}'s SDK {tag}")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_installs_the_package(path):
  text = path.read_text()
  copied = set(re.findall(r"^COPY\s+(\S+?)/?\s", text, re.M))
  assert {"setup.py"} | _packaged_folders() <= copied, (
      f"{path.name} does not copy {({'setup.py'} | _packaged_folders()) - copied}")
  assert re.search(r"^RUN pip install .* \.(\s|$)", text, re.M), (
      f"{path.name} does not pip install the package")
  jax = importlib.metadata.version("jax")
  assert f"ARG JAX_VERSION={jax}" in text, f"{path.name}: JAX is not {jax}"
