#!/usr/bin/env bash
# What the release bundle's test needs on a fresh machine: skopeo (Debian's package), an
# implementation of OCI image layouts independent of ours (containers/image), to read the
# bundle's layouts and verify their blobs.
set -euo pipefail
if ! command -v skopeo >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends skopeo >/dev/null
fi
skopeo --version
