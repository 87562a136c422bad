#!/usr/bin/env bash
# Installs what building and testing custos needs on Debian (bookworm), only what is missing.
# Idempotent; safe to run before every build. Needs root to install; without root it only checks.
set -euo pipefail

# command -> Debian package that provides it
declare -A NEED=(
  [cc]=gcc            # linker for Rust and C dependencies
  [mount]=mount       # tests mount their own tmpfs
  [umount]=mount
)

missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
echo "setup: ok" >&2
