#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh), starts the Cove engine in a lab
# network namespace and walks the seed's Docker networking tutorial with `cove`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/demo/tutorial.js "$@"
