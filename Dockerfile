# syntax=docker/dockerfile:1
# tailwater: the `tailwater` binary (proxy, load, slo, rls, ...) in a small non-root image.
#
#   docker build -t tailwater .
#   docker run --rm -p 8080:8080 -v $PWD/proxy.toml:/etc/tailwater/proxy.toml:ro tailwater
#
# Stage 1 builds with the current stable Rust; stage 2 is
# Debian slim with only the binary, CA certificates and an unprivileged user.

# The latest stable 1.x (the workspace needs at least its rust-version, 1.88).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tailwater \
    && install -D -m 0755 target/release/tailwater /out/tailwater

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tailwater \
    && useradd --system --uid 10001 --gid tailwater --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin tailwater \
    && mkdir -p /etc/tailwater
COPY --from=build /out/tailwater /usr/local/bin/tailwater
COPY packaging/proxy.example.toml /etc/tailwater/proxy.toml
USER 10001:10001
# 8080: proxied traffic; 9901: admin (/metrics, /status, /healthz, /ready). The admin
# listener has no authentication: publish it only to the scraper's network.
EXPOSE 8080 9901
ENV TAILWATER_CONFIG=/etc/tailwater/proxy.toml \
    TAILWATER_LOG_FORMAT=json
# Orchestrators: probe GET :9901/healthz (live) and /ready (503 while draining).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tailwater"]
CMD ["proxy"]
