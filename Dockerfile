# syntax=docker/dockerfile:1
#
# cwconsumer: reads CloudWatch Logs and ships every event over HTTP.
#
#   docker build -t cwconsumer .
#   docker run --rm -v cwc-state:/var/lib/cwconsumer -e CWC_LOG_GROUPS=... -e CWC_SINK_URL=... cwconsumer
#
# Behind a TLS-intercepting proxy, hand the build its CA bundle as a build secret (it never
# lands in a layer):  docker build --secret id=build_ca,src=/path/to/ca-bundle.pem .
#
# Base image: pinned by version tag. Pin it by digest too (python:3.11.14-slim-bookworm@sha256:...)
# in your build pipeline; the digest could not be verified where this file was written (no
# registry reachable), so none is given here. Both stages must use the same base: the virtual
# environment built in the first stage links to that base's python3.
# deploy/verify-image.sh builds this file against a locally made stand-in for this base.

FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# Dependencies first, from hash-pinned lock files: this layer is reused until they change.
# /opt/build holds the pinned build tools; /opt/venv (the only thing shipped) gets no pip at all.
# `python3 -m venv` works on the official image (/usr/local/bin/python3) and on Debian's python3.
COPY deploy/image/requirements-build.txt deploy/image/requirements.txt /tmp/requirements/
RUN --mount=type=secret,id=build_ca \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps \
        -r /tmp/requirements/requirements-build.txt \
    && python3 -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install \
        --require-hashes --no-deps --only-binary=:all: -r /tmp/requirements/requirements.txt

# The package itself. cwconsumer/migrations is a symlink to ../migrations, so both are copied
# with the same layout and the wheel carries the .sql files.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY migrations ./migrations
COPY cwconsumer ./cwconsumer
RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --no-index --wheel-dir /tmp/wheels . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps --no-index /tmp/wheels/*.whl \
    && /opt/venv/bin/python -c "import importlib.resources as r; assert any(p.name.endswith('.sql') for p in r.files('cwconsumer').joinpath('migrations').iterdir()), 'no migrations in the wheel'"


FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="cwconsumer" \
      org.opencontainers.image.description="Reads CloudWatch Logs and ships every event over HTTP, checkpointing only confirmed deliveries" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric uid/gid: the EFS access point in deploy/ creates the state directory for it.
RUN groupadd --gid 10001 cwconsumer \
    && useradd --uid 10001 --gid 10001 --no-create-home --no-log-init \
        --home-dir /var/lib/cwconsumer --shell /usr/sbin/nologin cwconsumer \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/cwconsumer

COPY --from=build /opt/venv /opt/venv

# PATH is spelled out rather than extended so the image does not depend on the base setting it.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CWC_DB_PATH=/var/lib/cwconsumer/state.db

WORKDIR /var/lib/cwconsumer
USER 10001:10001
VOLUME ["/var/lib/cwconsumer"]

# `docker stop` and ECS send this signal; cwconsumer then stops fetching, finishes in-flight
# deliveries within CWC_SHUTDOWN_TIMEOUT (20s), stores checkpoints and exits 0. Exec form below
# keeps cwconsumer as the process that receives it (no shell in between).
STOPSIGNAL SIGTERM

# Asks the admin server (CWC_ADMIN_ADDR, loopback by default) for /healthz: no curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["cwconsumer", "healthcheck", "--standby-ok"]

ENTRYPOINT ["cwconsumer"]
CMD ["run"]
