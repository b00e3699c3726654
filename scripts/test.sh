#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh), checks that every program the
# suite runs is installed (scripts/check-programs.sh), and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/check-programs.sh
exec node scripts/run-tests.mjs "$@"
