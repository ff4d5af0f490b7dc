# ratui as a daemon, a drop-in for rathole's image in a compose file:
#
#   services:
#     ratui:
#       image: ratui
#       command: --server /app/config.toml      # rathole: `command: --server /app/config.toml`
#       volumes: ["./server.toml:/app/config.toml:ro"]
#       ports: ["2333:2333", "5202:5202"]
#
# ratui runs as uid 10001: the mounted config must be readable by it (chown 10001 or mode
# 0644 on a file without secrets), or run the container with `user: "0"`.
#
# `docker exec CONTAINER ratui status` and `docker exec -it CONTAINER ratui attach` reach the
# daemon through its control socket. Metrics: add `--metrics-addr 0.0.0.0:9100` to the command
# (or RATUI_METRICS_ADDR) and publish the port.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ratui ./ratui
RUN python -m venv /opt/ratui \
    && /opt/ratui/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM python:${PYTHON_VERSION}-slim-bookworm
COPY --from=build /opt/ratui /opt/ratui
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ratui \
    && mkdir -p /app /run/ratui \
    && chown ratui:ratui /run/ratui \
    && chmod 0700 /run/ratui
ENV PATH=/opt/ratui/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RATUI_CONTROL_SOCKET=/run/ratui/control.sock
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["ratui", "--daemon"]
CMD ["/app/config.toml"]
