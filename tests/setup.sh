#!/usr/bin/env bash
# Everything the tests need on a fresh machine: the package with its runner, detect, dev and
# ray extras (torch first: 2.13.0 is the CPU build); for the browser test of the WebUI accordion,
# Debian's Chromium and two UI environments: .venv-ui (gradio 3.41.2, as A1111 pins it) and
# .venv-ui4 (gradio 4.40.0, as Forge 2 and Neo pin it); and .venv-detect, with ultralytics and
# mediapipe for the YOLO and mediapipe detectors. ultralytics needs torchvision, and PyPI has
# no CPU build of it for x86_64: there the only pair that imports is torch 2.14.1 with
# torchvision 0.29.1, CUDA builds (about 5.5 GB with their NVIDIA libraries; they run on the
# CPU); on aarch64 PyPI's torch 2.9.1 with torchvision 0.24.1 are CPU builds (about 0.7 GB).

set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install torch==2.13.0
python -m pip install -e ".[run,detect,dev,ray]"
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        echo "setup: install Debian's chromium (sudo apt-get install chromium) for the browser test" >&2
    fi
fi
# A1111 1.10's gradio 3.41.2, and Forge 2's gradio 4.40.0, each with its host's pins
for env in ".venv-ui:ui/requirements.txt" ".venv-ui4:ui/requirements-gradio4.txt" \
    ".venv-detect:detect/requirements.txt"; do
    dir=${env%%:*}
    [ -x "$dir/bin/python" ] || python -m venv "$dir"
    if [ "$dir" = ".venv-detect" ]; then
        if [ "$(uname -m)" = "aarch64" ]; then
            "$dir/bin/python" -m pip install -q torch==2.9.1 torchvision==0.24.1
        else
            "$dir/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
        fi
    fi
    "$dir/bin/python" -m pip install -q -r "tests/${env##*:}"
done
