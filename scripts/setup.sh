#!/usr/bin/env bash
# Installs what building and testing custos needs on Debian (bookworm), only what is missing.
# Idempotent; safe to run before every build. Needs root to install; without root it only checks.
set -euo pipefail

# Debian packages, and why.
NEED=(
  gcc          # linker for Rust and C dependencies
  mount        # tests mount their own tmpfs
  e2fsprogs    # and ext2/ext4 images (mkfs.ext2, mkfs.ext4) for the file event tests
  clang-19     # compiles bpf/*.bpf.c (Debian has no plain `clang`; CUSTOS_CLANG overrides)
  libelf-dev   # libbpf (vendored by libbpf-sys) links libelf
  zlib1g-dev   # and zlib
  pkg-config   # libbpf-sys finds them with it
)

missing=()
for p in "${NEED[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
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
