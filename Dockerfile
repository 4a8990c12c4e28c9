# CPU worker image for Dataflow / Flink: Beam's Python SDK container plus this package, the pinned
# dependencies, CPU-only torch (no NVIDIA packages), the spaCy model and SmolLM2 pre-converted.
#   docker build -t IMAGE_CPU . && docker push IMAGE_CPU
#   Dataflow: python -m pipelines.label ... --runner=DataflowRunner --sdk_container_image=IMAGE_CPU
#   Flink:    python -m pipelines.label ... --runner=FlinkRunner --environment_type=DOCKER \
#                 --environment_config=IMAGE_CPU
# GPU workers (scoring on CUDA): Dockerfile.gpu.
FROM apache/beam_python3.11_sdk:2.77.0
WORKDIR /opt/lacy
ENV HF_HUB_OFFLINE=1 LACY_CACHE=/opt/lacy-cache TOKENIZERS_PARALLELISM=false
COPY requirements.txt requirements-assets.txt pyproject.toml setup.py README.md LICENSE ./
COPY docker docker
COPY lacy_labels lacy_labels
COPY pipelines pipelines
COPY trainer trainer
RUN docker/install.sh cpu
