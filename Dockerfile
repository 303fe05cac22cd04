# The greeter image. The generator and the consumer run from the same image with another command
# (`greeter-generator`, `greeter-consumer`), so there is one install of the locked dependencies.
# The base: the public image by default; any Debian-based Python 3.11 image with pip works (tests/compose builds one).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
# Dependencies first, from the lock file alone: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# The project itself. The generated protobuf code is committed (protos/generated), checked by a test.
COPY README.md ./
COPY protos ./protos
COPY greeter ./greeter
COPY generator ./generator
COPY consumer ./consumer
COPY clitools ./clitools
COPY stack ./stack
COPY deploy_render ./deploy_render
COPY certs ./certs
RUN uv sync --frozen --no-dev --no-editable \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin greeter
USER 10001

ENV PATH=/app/.venv/bin:$PATH \
    GREETER_BIND=0.0.0.0:8000 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/greeter-metrics
EXPOSE 8000

# No HEALTHCHECK: the generator and the consumer run from this image too and serve nothing; the compose file
# gives the greeter service its probe of /healthz (Kubernetes: the Deployment's probes).

# gunicorn's graceful stop: on SIGTERM the workers drain their connections (GREETER_GRACEFUL_TIMEOUT, 20 s);
# give the container longer than that before SIGKILL (compose: stop_grace_period).
STOPSIGNAL SIGTERM
CMD ["greeter-serve"]
