#!/usr/bin/env bash
# Installs every system dependency of agl from Debian 12 packages. Idempotent: when all
# packages are present it does nothing (and needs no network).
#   deploy/install-deps.sh                  install what is missing
#   deploy/install-deps.sh --check-or-install   same, quiet when nothing is missing
set -euo pipefail

PKGS=(
  build-essential pkg-config git clang-format cppcheck
  libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libpq-dev zlib1g-dev
  protobuf-c-compiler libprotobuf-c-dev libcmocka-dev
  postgresql-15 postgresql-client-15
  openmpi-bin libopenmpi-dev
  python3 python3-venv python3-pip
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  [[ "${1:-}" == "--check-or-install" ]] || echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install packages" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's postgresql package starts a system cluster; agl never uses it (stored runs its own
# private cluster and the tests start scratch ones), so leave it alone but don't depend on it.
echo "install-deps: done"
