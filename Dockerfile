# One image for every esocial service: `esocial serve <service>`,
# `esocial migrate`, `esocial up`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p esocial \
 && cp target/release/esocial /usr/local/bin/esocial

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/esocial --create-home esocial
COPY --from=build /usr/local/bin/esocial /usr/local/bin/esocial
USER esocial
WORKDIR /var/lib/esocial
ENV ESOCIAL_LOG_FORMAT=json \
    ESOCIAL_DATA_DIR=/var/lib/esocial \
    ESOCIAL_JWKS_FILE=/var/lib/esocial/jwks.json
ENTRYPOINT ["/usr/local/bin/esocial"]
CMD ["up"]
