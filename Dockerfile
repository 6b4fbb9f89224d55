# The server image: one image for the API (`server`), the delivery workers (`server worker`),
# the one-shot `server migrate` and the admin commands (`server create-user …`).
#
#   docker build -t claude-notify .
#   docker run -p 8080:8080 -e DATABASE_URL=… claude-notify              # the API
#   docker run -e DATABASE_URL=… -e REDIS_URL=… claude-notify worker      # a worker
#
# Offline: put every wheel that `pip wheel ".[server]"` needs (hatchling included) into
# deploy/wheelhouse/ and add `--build-arg PIP_NO_INDEX=1`; `--build-arg BASE_IMAGE=…` picks a
# local base (any Debian-like image with python3 >= 3.10 and its venv module). See docs/deploy.md.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Unset unless given: pip reads PIP_NO_INDEX=1 and then uses deploy/wheelhouse/ alone.
ARG PIP_NO_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY deploy/wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md ./
COPY claude_notify/ claude_notify/
# The project's wheel and its dependencies' wheels, then the venv installed from them alone. A
# venv's own pip, as a Debian python3 base has no pip of its own; the venv sits at the path it
# keeps in the final stage (its scripts name their interpreter).
RUN python3 -m venv /opt/claude-notify \
 && /opt/claude-notify/bin/pip wheel --find-links /wheelhouse --wheel-dir /wheels ".[server]" \
 && /opt/claude-notify/bin/pip install --no-index --find-links /wheels "claude-notify[server]" \
 && /opt/claude-notify/bin/claude-notify server --help > /dev/null

FROM ${BASE_IMAGE}
# A numeric uid (the same in deploy/), so Kubernetes' runAsNonRoot can check it without
# reading /etc/passwd.
RUN groupadd --system --gid 10001 claude-notify \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/claude-notify \
      --create-home --shell /usr/sbin/nologin claude-notify
COPY --from=build /opt/claude-notify /opt/claude-notify
# HOME holds only the embedded SQLite default (a single container without DATABASE_URL);
# deployments use PostgreSQL and may run with a read-only root file system.
ENV PATH=/opt/claude-notify/bin:$PATH \
    HOME=/var/lib/claude-notify \
    XDG_DATA_HOME=/var/lib/claude-notify \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/claude-notify
EXPOSE 8080
# Liveness of the API only (a worker or migrate container overrides or disables it). Python's
# urllib, so the image needs no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["claude-notify", "server"]
CMD ["--host", "0.0.0.0", "--port", "8080"]
