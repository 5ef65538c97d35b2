#!/usr/bin/env bash
# Set up imuflow in ./.venv on a fresh Debian/Ubuntu machine with Python 3.11.
#   bash tools/setup.sh          # runtime: the package and the window's system libraries
#   bash tools/setup.sh --dev    # plus training (PyTorch CPU), test tools and Xvfb
# System packages are installed with apt-get when running as root (or with sudo -n);
# otherwise the missing ones are listed and the window falls back to headless mode.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
py=${PYTHON:-python3.11}

# Qt (PySide6) + vispy window on Mesa software OpenGL; see docs/viewer.md
pkgs=(libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
      libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0
      libdbus-1-3 libfontconfig1)
[ $dev = 1 ] && pkgs+=(xvfb)

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else sudo=none; fi
    if [ "$sudo" = none ]; then
      echo "setup: not root: install these for the window: sudo apt-get install ${missing[*]}" >&2
    else
      echo "setup: installing system packages: ${missing[*]}" >&2
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $py" >&2
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ $dev = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[dev]'
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup: done (.venv/bin/imuflow --help)" >&2
