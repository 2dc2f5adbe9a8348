# Sourced by scripts/quickstart.sh and scripts/test.sh: make (once) and activate a virtual
# environment, then install predlearn into it. torch is installed first and only when missing, so
# a user's own (CUDA) build is kept; 2.13.0 is the release this project is tested with.
# VENV=path picks another environment folder (default .venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
. "$VENV/bin/activate"
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install --quiet "torch==2.13.0"
fi
python -m pip install --quiet -e ".[dev]"
