# Training and evaluation jobs (train_diffusion, train_classifier, evaluate, the
# workflow) with JAX. Build from the repo root:
#   docker build -f docker/training.Dockerfile -t <registry>/synthfactory-train .
#   docker build -f docker/training.Dockerfile --build-arg JAX_EXTRA=tpu ...  # TPU VMs
# Run: docker run --gpus all <image> -m synthfactory.training.train_diffusion --config=...
FROM python:3.11-slim

# cuda12: JAX's CUDA wheels (the host needs only the NVIDIA driver); tpu: libtpu.
ARG JAX_EXTRA=cuda12
ARG JAX_VERSION=0.10.2
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

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
# Configs are read as files (--config=training/configs/...:variant) from here.
RUN pip install "jax[${JAX_EXTRA}]==${JAX_VERSION}" . \
    && python -c "import synthfactory.training.train_diffusion"
ENTRYPOINT ["python"]
