#!/usr/bin/env bash
# System packages the runtime and its tests use:
#   ffmpeg    required: H.264 overlay video, ffprobe, the udp:// test stream
#   chromium  optional: the live-view browser tests drive Debian's chromium headless through
#             Playwright (never a downloaded browser); if it cannot be installed, only those
#             tests skip. PSPNET_RT_NO_CHROMIUM=1 leaves it out.
#   postgresql optional: the search tests start their own PostgreSQL server (initdb/postgres as
#             an unprivileged user in a temp dir); only the binaries are needed, so no system
#             cluster is created or started. If it cannot be installed, only that test skips.
#             PSPNET_RT_NO_POSTGRES=1 leaves it out.
#   GStreamer RTSP server  optional: `--output rtsp://` and the RTSP camera of the tests and
#             benchmark (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base/good/
#             ugly for x264enc); if it cannot be installed, that output says how to get it and those
#             tests skip. PSPNET_RT_NO_GSTREAMER=1 leaves it out.
# Idempotent: does nothing when all are already present, so CI can call it on every run.
# Needs root (or sudo) and apt; on other systems it says what to install and fails (ffmpeg)
# or warns (chromium), rather than guessing a package manager.
set -euo pipefail

# PostgreSQL (optional; warns, never fails): the server binaries only, no cluster, no service.
install_postgres() {
  [ "${PSPNET_RT_NO_POSTGRES:-0}" = "1" ] && return 0
  if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "install-system-deps: postgresql already present"
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-system-deps: warning: postgresql is missing and this script needs root; the PostgreSQL search test will skip" >&2; return 0; }
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "install-system-deps: warning: postgresql is missing and apt-get is not available; the PostgreSQL search test will skip" >&2; return 0; }
  # Debian's postgresql-common would create and start a 'main' cluster; the tests need neither.
  $sudo mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/pspnet-rt-no-main-cluster.conf >/dev/null
  if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || {
       DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >/dev/null 2>&1 &&
       DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; }; then
    echo "install-system-deps: installed postgresql ($(ls -d /usr/lib/postgresql/*/bin | tail -n 1))"
  else
    echo "install-system-deps: warning: apt-get install postgresql failed; the PostgreSQL search test will skip" >&2
  fi
}
install_postgres

# GStreamer's RTSP server (optional; warns, never fails). What it needs is checked by the helper
# itself (runtime/rtsp_helper.py --check), so the list lives in one place.
RTSP_HELPER="$(cd "$(dirname "$0")/.." && pwd)/runtime/rtsp_helper.py"
GST_PACKAGES="python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
have_gst_rtsp() { [ -x /usr/bin/python3 ] && /usr/bin/python3 "$RTSP_HELPER" --check >/dev/null 2>&1; }
install_gstreamer_rtsp() {
  [ "${PSPNET_RT_NO_GSTREAMER:-0}" = "1" ] && return 0
  if have_gst_rtsp; then
    echo "install-system-deps: GStreamer RTSP server already present (/usr/bin/python3 with gi)"
    return 0
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-system-deps: warning: the GStreamer RTSP server is missing and this script needs root; --output rtsp:// and the RTSP tests will skip" >&2; return 0; }
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "install-system-deps: warning: no apt-get; install $GST_PACKAGES (or your system's equivalents) for --output rtsp:// and the RTSP tests" >&2; return 0; }
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $GST_PACKAGES >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >/dev/null 2>&1 &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $GST_PACKAGES >/dev/null 2>&1; } || true
  if have_gst_rtsp; then
    echo "install-system-deps: installed the GStreamer RTSP server ($GST_PACKAGES)"
  else
    echo "install-system-deps: warning: the GStreamer RTSP server is not usable ($(/usr/bin/python3 "$RTSP_HELPER" --check 2>&1 | tail -n 1)); --output rtsp:// says how to fix it, the RTSP tests skip" >&2
  fi
}
install_gstreamer_rtsp

have_ffmpeg() { command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
want_chromium=1
[ "${PSPNET_RT_NO_CHROMIUM:-0}" = "1" ] && want_chromium=0

need_ffmpeg=1; have_ffmpeg && need_ffmpeg=0
need_chromium=0; [ "$want_chromium" = 1 ] && ! have_chromium && need_chromium=1
[ "$need_ffmpeg" = 0 ] && echo "install-system-deps: ffmpeg already present ($(command -v ffmpeg))"
have_chromium && echo "install-system-deps: chromium already present ($(command -v chromium || command -v chromium-browser))"
if [ "$need_ffmpeg" = 0 ] && [ "$need_chromium" = 0 ]; then
  exit 0
fi

# Without ffmpeg this fails; with only chromium missing it warns and succeeds.
cannot() {
  if [ "$need_ffmpeg" = 1 ]; then
    echo "install-system-deps: ffmpeg is missing and $1; install ffmpeg (with ffprobe)" >&2
    exit 1
  fi
  echo "install-system-deps: warning: chromium is missing and $1; the browser tests will skip" >&2
  exit 0
}

command -v apt-get >/dev/null 2>&1 || cannot "apt-get is not available (use your system's package manager)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || cannot "this script needs root (apt-get)"
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || cannot "apt-get update failed"
if [ "$need_ffmpeg" = 1 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends ffmpeg
  have_ffmpeg
  echo "install-system-deps: installed $(ffmpeg -hide_banner -version | head -n 1)"
fi
if [ "$need_chromium" = 1 ]; then
  need_ffmpeg=0  # from here on a failure only warns
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null || cannot "apt-get install chromium failed"
  have_chromium || cannot "the chromium package gave no chromium binary"
  echo "install-system-deps: installed $(chromium --version 2>/dev/null || echo chromium)"
fi
