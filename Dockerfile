# GPU image of the cofounder-agent image service. Build: docker build -t cofounder-agent .
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

# torch wheels bundle their own CUDA libraries; pick the build that matches the host driver.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libgl1/libglib2.0-0: OpenCV (used by the PIQE quality metric) links against them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 app \
    && python3 -m venv /opt/venv \
    && mkdir -p /data /hf-cache \
    && chown app:app /data /hf-cache

WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
RUN /opt/venv/bin/pip install --extra-index-url "${TORCH_INDEX_URL}" -c constraints.txt .

# Weights come from the mounted HF cache or a mounted folder; nothing is downloaded unless
# IMAGE_ALLOW_DOWNLOAD=true. Logs go to stdout (the container runtime keeps them).
ENV PATH=/opt/venv/bin:$PATH \
    HF_HOME=/hf-cache \
    IMAGE_DATA_DIR=/data \
    IMAGE_LOG_FILE=""

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["cofounder-agent", "serve", "--host", "0.0.0.0", "--port", "8000"]
