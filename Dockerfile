# syntax=docker/dockerfile:1
# The bridge as one image: the web process by default (like the Procfile's `web`), the
# worker with `bridge worker`, the release check with `bridge check-config`.
#
#   docker build -t realgeeks-liondesk-bridge .
#   docker run -e REDIS_URL=redis://… -p 5000:5000 realgeeks-liondesk-bridge
#   docker run -e REDIS_URL=redis://… realgeeks-liondesk-bridge bridge worker
#
# Debian release pinned too (bookworm), so a new Debian under the `3.11-slim` tag cannot
# change the image underneath the lock. The Python minor version is the one
# `.python-version` names and the test suite runs on.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtualenv holding the locked production pins and the bridge itself ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The pins first (every line of requirements.txt but the bridge's own `.`), so a code
# change does not reinstall them. Wheels only: the lock was resolved that way, and a
# package that would need a compiler fails the build instead of pulling one in.
COPY requirements.txt ./
RUN grep -vx '\.' requirements.txt > /tmp/pins.txt \
    && pip install --only-binary=:all: -r /tmp/pins.txt
# Then the bridge, from the same requirements.txt (its last line, `.`, is the bridge).
# config/ is needed to build: bridge/translate/default_rules.toml links to config/rules.toml.
COPY pyproject.toml README.md ./
COPY bridge/ bridge/
COPY workers/ workers/
COPY config/ config/
RUN pip install --only-binary=:all: -r requirements.txt

# ---- runtime: the interpreter, the virtualenv and gunicorn.conf.py; no compiler, no pip cache ----
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=5000
# A system user without a home or a shell: nothing in the image is writable by the
# process, and the bridge keeps all its state in Redis (REDIS_URL).
RUN useradd --system --user-group --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin bridge
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY gunicorn.conf.py ./
# Numeric, so that orchestrators enforcing "run as non-root" can verify it.
USER 10001:10001
EXPOSE 5000
CMD ["gunicorn", "--config", "gunicorn.conf.py", "bridge.web:create_app()"]
