#!/usr/bin/env bash
# Debian packages the tests need beyond the venv (run as root; a second run with nothing
# missing returns at once): binutils for RISC-V, gcc and g++ build the mock-device harness;
# chromium runs the depth view's browser tests (playwright drives it, never downloads one).
set -euo pipefail
need=()
command -v riscv64-unknown-elf-ld >/dev/null || need+=(binutils-riscv64-unknown-elf)
command -v cc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup_system: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
