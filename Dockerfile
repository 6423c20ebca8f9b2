# pgml-proxy in front of any PostgreSQL: docker run -e PGML_PROXY_UPSTREAM=postgresql://... -p 6432:6432
FROM python:3.11-slim

RUN useradd --create-home --uid 1000 pgml
WORKDIR /app

# torch first, pinned, so the engines' range requirement installs nothing larger. For a CPU-only image,
# point TORCH_INDEX_URL at a CPU wheel index.
ARG TORCH_INDEX_URL=""
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0

COPY engines/ engines/
RUN pip install --no-cache-dir ./engines
COPY pyproject.toml README.md ./
COPY pgml_proxy/ pgml_proxy/
RUN pip install --no-cache-dir .

USER pgml
ENV PGML_PROXY_LISTEN=0.0.0.0:6432
EXPOSE 6432
ENTRYPOINT ["pgml-proxy"]
