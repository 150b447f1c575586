# syntax=docker/dockerfile:1
# rbm container image: `rbm`, `rbm-agent` and `rbm-agent-entrypoint` on Debian slim,
# running as uid 1001 (the user the Percona Operator runs its backup sidecar as).
#
#   docker build -t rbm .
#   docker run --rm -e PBM_MONGODB_URI='mongodb://user:pass@mongo1:27017/' rbm
#
# The entrypoint starts rbm-agent with its arguments; with PBM_AGENT_SIDECAR=true it
# restarts the agent when it exits (PBM_AGENT_SIDECAR_SLEEP seconds later), and it
# forwards SIGTERM/SIGINT so the agent shuts down cleanly. PBM's names (pbm, pbm-agent,
# pbm-agent-entrypoint) are links to rbm's, so tools that run PBM's binaries run rbm.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Only the workspace: .dockerignore keeps target/ and .git/ out of the context.
COPY . .
# Symbols stay (function names in backtraces); DWARF goes, which halves the binaries.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rbm-agent --bins \
 && install -D -m 0755 -t /out \
      target/release/rbm target/release/rbm-agent target/release/rbm-agent-entrypoint

FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: TLS to S3, Azure and MongoDB. bash stays (it is in the base image):
# the Percona Operator runs its own shell scripts in the backup container.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1001 rbm \
 && useradd --system --uid 1001 --gid 1001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin rbm
COPY --from=builder /out/ /usr/bin/
RUN ln -s rbm /usr/bin/pbm \
 && ln -s rbm-agent /usr/bin/pbm-agent \
 && ln -s rbm-agent-entrypoint /usr/bin/pbm-agent-entrypoint \
 && rbm version && rbm-agent version
LABEL org.opencontainers.image.title="rbm" \
      org.opencontainers.image.description="Rust Backup for MongoDB: a drop-in for Percona Backup for MongoDB 2.x" \
      org.opencontainers.image.licenses="Apache-2.0"
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 1001:1001
ENTRYPOINT ["/usr/bin/rbm-agent-entrypoint"]
