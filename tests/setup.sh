#!/usr/bin/env bash
# Everything the tests need on a fresh machine: the package with its runner and dev extras
# (torch first: 2.13.0 is the CPU build), and for the browser test of the WebUI accordion,
# Debian's Chromium and a .venv-ui with gradio as the WebUI pins it.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install torch==2.13.0
python -m pip install -e ".[run,dev]"
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "setup: install Debian's chromium (sudo apt-get install chromium) for the browser test" >&2
    fi
fi
if [ ! -x .venv-ui/bin/python ]; then
    python -m venv .venv-ui
fi
.venv-ui/bin/python -m pip install -q -r tests/ui/requirements.txt
