#!/usr/bin/env bash
# System packages the runtime and its tests use: ffmpeg (H.264 overlay video, ffprobe, the
# udp:// test stream). Idempotent: does nothing when ffmpeg and ffprobe are already on PATH,
# so CI can call it on every run. Needs root (or sudo) and apt; on other systems it says what
# to install and fails, rather than guessing a package manager.
set -euo pipefail

if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
  echo "install-system-deps: ffmpeg already present ($(command -v ffmpeg))"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: ffmpeg is missing and apt-get is not available;" \
       "install ffmpeg (with ffprobe) with your system's package manager" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install-system-deps: ffmpeg is missing; run this script as root (apt-get needs it)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends ffmpeg
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null
echo "install-system-deps: installed $(ffmpeg -hide_banner -version | head -n 1)"
