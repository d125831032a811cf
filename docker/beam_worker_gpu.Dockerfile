# Beam SDK worker with JAX on NVIDIA GPUs: the generation job's Dataflow workers
# (--sdk_container_image; see docker/README.md). Build from the repo root:
#   docker build -f docker/beam_worker_gpu.Dockerfile -t <registry>/synthfactory-beam-gpu .
# The Beam SDK version must equal the launcher's apache-beam (tests/test_docker.py).
FROM apache/beam_python3.11_sdk:2.77.0

# JAX's CUDA 12 wheels bring CUDA and cuDNN; Dataflow installs the driver
# (worker_accelerator=...;install-nvidia-driver).
ARG JAX_VERSION=0.10.2
ENV PIP_NO_CACHE_DIR=1 \
    XLA_PYTHON_CLIENT_PREALLOCATE=false

WORKDIR /opt/synthfactory
# Only what setup.py packages: edits elsewhere keep the layer cache.
COPY setup.py ./
COPY synthfactory_root/ synthfactory_root/
COPY models/ models/
COPY datasets/ datasets/
COPY training/ training/
COPY evaluation/ evaluation/
COPY beam_jobs/ beam_jobs/
COPY tfds_builders/ tfds_builders/
COPY pipelines/ pipelines/
RUN pip install "jax[cuda12]==${JAX_VERSION}" . \
    && python -c "import synthfactory.beam_jobs.generation"
# The SDK image's ENTRYPOINT (/opt/apache/beam/boot) stays: Dataflow starts it.
