"""synthfactory: class-conditional diffusion models as a labelled-data factory.

One import root, `synthfactory`; the repo keeps one top-level folder per concept and
`package_dir` maps each into it (see DESIGN: layout).
"""
import setuptools

_PACKAGES = ("models", "datasets", "training", "evaluation", "beam_jobs",
             "tfds_builders", "pipelines")

_INSTALL_REQUIRES = [
    "absl-py>=2.1,<3",
    # One Beam release: Dataflow workers run docker/beam_worker_*.Dockerfile's SDK image,
    # which must equal the launcher's apache-beam; bump both together.
    "apache-beam[gcp]>=2.77.0,<2.78",
    "array-record>=0.7,<0.9",
    "flax>=0.10,<0.13",
    "google-cloud-storage>=2.18,<4",
    "grain>=0.2.10,<0.3",
    # TFDS imports these at run time without declaring them (DESIGN §4).
    "importlib_resources>=6",
    "jax>=0.6,<0.11",
    "jaxlib>=0.6,<0.11",
    "matplotlib>=3.8,<4",
    "ml-collections>=1.0,<2",
    "mlcroissant>=1.0,<2",
    "numpy>=2.0,<3",
    "optax>=0.2.4,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "pillow>=10,<13",
    "tensorflow-cpu>=2.18,<2.22",
    "tensorflow-datasets>=4.9.8,<5",
]

_EXTRAS = {
    # gcp-storage-emulator: a local GCS for the gs:// tests (tests/test_storage.py).
    "test": ["gcp-storage-emulator>=2026.7,<2028", "pytest>=8,<10",
             "pytest-xdist>=3.6,<4"],
}


def _package_map():
  packages, package_dir = ["synthfactory"], {"synthfactory": "synthfactory_root"}
  for folder in _PACKAGES:
    for sub in setuptools.find_packages(where=folder):
      packages.append(f"synthfactory.{folder}.{sub}")
      package_dir[f"synthfactory.{folder}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    packages.append(f"synthfactory.{folder}")
    package_dir[f"synthfactory.{folder}"] = folder
  return packages, package_dir


_packages, _package_dir = _package_map()

setuptools.setup(
    name="synthfactory",
    version="0.1.0",
    description="Class-conditional diffusion models that manufacture labelled "
                "training sets (Azizi et al. 2023, reproduced and extended).",
    python_requires=">=3.10",
    packages=_packages,
    package_dir=_package_dir,
    package_data={"synthfactory.models": ["*.json"],
                  "synthfactory.datasets": ["data/*.json"]},
    install_requires=_INSTALL_REQUIRES,
    extras_require=_EXTRAS,
)
