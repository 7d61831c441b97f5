#!/usr/bin/env bash
# System packages the runtime and its tests use:
#   ffmpeg    required: H.264 overlay video, ffprobe, the udp:// test stream
#   chromium  optional: the live-view browser tests drive Debian's chromium headless through
#             Playwright (never a downloaded browser); if it cannot be installed, only those
#             tests skip. PSPNET_RT_NO_CHROMIUM=1 leaves it out.
#   GStreamer RTSP server  optional: `--output rtsp://` and the RTSP camera of the tests and
#             benchmark (python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base/good/
#             ugly for x264enc); if it cannot be installed, that output says how to get it and those
#             tests skip. PSPNET_RT_NO_GSTREAMER=1 leaves it out.
# Idempotent: does nothing when all are already present, so CI can call it on every run.
# Needs root (or sudo) and apt; on other systems it says what to install and fails (ffmpeg)
# or warns (chromium), rather than guessing a package manager.
set -euo pipefail

have_ffmpeg() { command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
want_chromium=1
[ "${PSPNET_RT_NO_CHROMIUM:-0}" = "1" ] && want_chromium=0

# The RTSP server check is the helper's own (runtime/rtsp_helper.py --check): one list of what it needs.
RTSP_HELPER="$(cd "$(dirname "$0")/.." && pwd)/runtime/rtsp_helper.py"
GST_PACKAGES="python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
have_gst_rtsp() { [ -x /usr/bin/python3 ] && /usr/bin/python3 "$RTSP_HELPER" --check >/dev/null 2>&1; }
install_gstreamer_rtsp() {  # optional: warns, never fails the script
  [ "${PSPNET_RT_NO_GSTREAMER:-0}" = "1" ] && return 0
  if have_gst_rtsp; then
    echo "install-system-deps: GStreamer RTSP server already present (/usr/bin/python3 with gi)"
    return 0
  fi
  local sudo=""
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: warning: no apt-get; install $GST_PACKAGES (or your system's equivalents) for --output rtsp:// and the RTSP tests" >&2
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-system-deps: warning: the GStreamer RTSP server needs root (apt-get); the RTSP tests will skip" >&2; return 0; }
    sudo="sudo"
  fi
  if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $GST_PACKAGES >/dev/null \
      || { DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq \
           && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $GST_PACKAGES >/dev/null; }; then
    :
  fi
  if have_gst_rtsp; then
    echo "install-system-deps: installed the GStreamer RTSP server ($GST_PACKAGES)"
  else
    echo "install-system-deps: warning: the GStreamer RTSP server is not usable ($(/usr/bin/python3 "$RTSP_HELPER" --check 2>&1 | tail -n 1)); --output rtsp:// says how to fix it, the RTSP tests skip" >&2
  fi
  return 0
}

need_ffmpeg=1; have_ffmpeg && need_ffmpeg=0
need_chromium=0; [ "$want_chromium" = 1 ] && ! have_chromium && need_chromium=1
[ "$need_ffmpeg" = 0 ] && echo "install-system-deps: ffmpeg already present ($(command -v ffmpeg))"
have_chromium && echo "install-system-deps: chromium already present ($(command -v chromium || command -v chromium-browser))"
if [ "$need_ffmpeg" = 0 ] && [ "$need_chromium" = 0 ]; then
  install_gstreamer_rtsp
  exit 0
fi

# Without ffmpeg this fails; with only chromium missing it warns and succeeds.
cannot() {
  if [ "$need_ffmpeg" = 1 ]; then
    echo "install-system-deps: ffmpeg is missing and $1; install ffmpeg (with ffprobe)" >&2
    exit 1
  fi
  echo "install-system-deps: warning: chromium is missing and $1; the browser tests will skip" >&2
  install_gstreamer_rtsp
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
install_gstreamer_rtsp
