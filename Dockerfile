# syntax=docker/dockerfile:1
# Multi-stage: build a wheel with its dependencies in a builder, copy only the virtualenv into a
# slim runtime that runs as an unprivileged user.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/vary
COPY pyproject.toml README.md ./
COPY api ./api
COPY personalization ./personalization
COPY content ./content
RUN /opt/vary/bin/pip install --no-cache-dir .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/vary/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VARY_HOST=0.0.0.0 \
    VARY_PORT=8000 \
    VARY_DATA_DIR=/var/lib/vary
RUN groupadd --system --gid 10001 vary && useradd --system --uid 10001 --gid vary --home-dir /var/lib/vary --create-home vary
COPY --from=builder /opt/vary /opt/vary
USER 10001:10001
WORKDIR /var/lib/vary
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('VARY_PORT', '8000')}/health\", timeout=2)"]
# One image, three roles: the API (this default; set VARY_AGGREGATE=false when `vary aggregate` runs
# apart), `vary aggregate` and `vary sinks` — see deploy/k8s/.
CMD ["vary", "serve"]
