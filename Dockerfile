# The gradesync image: one static-ish release binary on Debian slim, run as an unprivileged
# user. Build with `docker compose build` (or `docker build -t gradesync .`).

# --- build: release binary from the locked dependency set; protoc for the Temporal protos.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds (BuildKit); the binary is
# copied out of the cached target/ so that the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin gradesync \
 && install -m 0755 target/release/gradesync /usr/local/bin/gradesync

# --- runtime: the binary and CA certificates (for HTTPS to the API and TLS to Temporal).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gradesync \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/gradesync --shell /usr/sbin/nologin gradesync \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/gradesync /var/lib/gradesync/reports
COPY --from=build /usr/local/bin/gradesync /usr/local/bin/gradesync
USER 10001:10001
WORKDIR /var/lib/gradesync
# Reconcile also writes each report here (the copy of what the store keeps).
ENV GRADESYNC_REPORT_DIR=/var/lib/gradesync/reports
# The worker drains on SIGTERM (Docker's and Kubernetes' stop signal) and on SIGINT:
# polling stops, in-flight work gets GRADESYNC_SHUTDOWN_GRACE_SECS, then it exits 0.
# Its probes and metrics listen where GRADESYNC_METRICS_LISTEN says (9464 by convention).
EXPOSE 9464
ENTRYPOINT ["gradesync"]
CMD ["worker"]
