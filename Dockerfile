# Reciprocity worker. Configured only by RECIPROCITY_* environment variables (README,
# "Configuration"); state under /var/lib/reciprocity, which must be a volume: the root file
# system can be read-only.
#
# The base is a build argument because the default needs a registry; scripts/build-image makes
# a Debian bookworm base with debootstrap where none is reachable. Any base with python3 ≥ 3.11
# and its venv module works.
ARG BASE_IMAGE=docker.io/library/python:3.11.7-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/reciprocity
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
# constraints.txt pins the whole dependency tree; the rocksdb extra makes rocksdb:// available.
# Behind a TLS-intercepting proxy, pass its CA bundle: --secret id=ca_bundle,src=FILE.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && /opt/reciprocity/bin/pip install --quiet -c constraints.txt '.[rocksdb]' \
 && /opt/reciprocity/bin/pip uninstall --quiet --yes pip \
 && /opt/reciprocity/bin/python -m compileall -q /opt/reciprocity

FROM ${BASE_IMAGE}
RUN (getent group reciprocity || groupadd --gid 10001 reciprocity) \
 && (getent passwd reciprocity || useradd --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/reciprocity --shell /usr/sbin/nologin reciprocity) \
 && mkdir -p /var/lib/reciprocity && chown 10001:10001 /var/lib/reciprocity
COPY --from=build /opt/reciprocity /opt/reciprocity
ENV PATH=/opt/reciprocity/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/reciprocity \
    RECIPROCITY_WORKER__DATA_DIR=/var/lib/reciprocity \
    RECIPROCITY_WORKER__WEB_BIND=0.0.0.0 \
    RECIPROCITY_WORKER__WEB_PORT=6066
VOLUME ["/var/lib/reciprocity"]
WORKDIR /var/lib/reciprocity
USER 10001:10001
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['RECIPROCITY_WORKER__WEB_PORT'] + '/healthz', timeout=4)"]
ENTRYPOINT ["reciprocity", "worker"]
