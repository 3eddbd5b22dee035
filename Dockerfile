# One image with the three Fanout binaries; docker-compose.yml picks the command.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/fanout-api /src/target/release/fanout-worker \
    /src/target/release/fanout-sandbox /usr/local/bin/
# Not root: the services need no privilege, only their data volume.
RUN useradd --system --uid 10001 --home-dir /data --create-home fanout
USER fanout
WORKDIR /data
