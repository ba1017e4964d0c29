#!/usr/bin/env bash
# Everything a fresh Debian 12 machine needs to run hubwizard, its lab and its tests:
# Debian packages (the Docker engine, debootstrap for lab images, OpenSSH, nginx, pebble,
# certbot, tmux...), the Python package with its test extras, and a running Docker engine.
# Safe to re-run: installed packages are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker.io debootstrap openssh-server openssh-client nginx-light pebble certbot
              apache2-utils tmux xfsprogs busybox-static iproute2 curl ca-certificates openssl
              libnfs-utils sudo
              chromium chromium-driver)  # the browser test (Selenium drives Debian's chromium)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# nginx and ssh from Debian may have started system services; the lab and tests use their own.

if ! python3 -c "import hubwizard, pytest, textual, selenium, requests" 2>/dev/null || [ pyproject.toml -nt .hubwizard-installed ]; then
    echo "setup: installing hubwizard and its test dependencies (pip)"
    python3 -m pip install -q --disable-pip-version-check -e '.[test]'
    touch .hubwizard-installed
fi

bash scripts/dockerd.sh start
