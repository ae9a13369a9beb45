# maint's own image: `maint run` as a non-root user on a slim Python base.
# Build: `make image` (docker build -t maint:dev .). The kind overlay expects it pushed as
# localhost:5001/maint:dev (tools/demo.sh and tests/e2e do that).
#
# Two stages: the wheel is built with pip in the first, so the runtime image has no build
# context, no compiler and no pip cache. psycopg[binary] brings its own libpq.
#
# PYTHON_BASE is the Python image both stages start from (`docker build --build-arg
# PYTHON_BASE=...`), e.g. a mirror in a private registry. The real-node tests assemble the same
# image without Docker (tools/nodeimages): Debian's python3 as the base, maint installed from
# wheels built on the host, and this final stage's ENV, USER, WORKDIR, ENTRYPOINT and CMD read
# from this file, so the two cannot drift apart.
ARG PYTHON_BASE=python:3.12-slim-bookworm

FROM ${PYTHON_BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY maint ./maint
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A fixed UID so Kubernetes can check runAsNonRoot; the manifests use the same number.
RUN groupadd --system --gid 10001 maint \
 && useradd --system --uid 10001 --gid maint --home-dir /home/maint --create-home maint
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl
USER 10001:10001
WORKDIR /home/maint
ENTRYPOINT ["maint"]
CMD ["run"]
