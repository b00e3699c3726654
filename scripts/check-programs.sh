#!/usr/bin/env bash
# Fails fast and loud when a program that Cove or its tests run is not on PATH.
# The list is scripts/programs.txt (program -> Debian package), which
# scripts/setup.sh installs from; a program missing here means an install step
# is missing there, which a machine that happened to have the program would hide.
set -euo pipefail
cd "$(dirname "$0")"
missing=()
while read -r prog pkg _; do
  case "$prog" in ''|'#'*) continue ;; esac
  command -v "$prog" >/dev/null 2>&1 || missing+=("$prog (Debian package $pkg)")
done < programs.txt
if [ "${#missing[@]}" -gt 0 ]; then
  echo "ERROR: programs that Cove or its tests run are not installed:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "scripts/setup.sh should have installed them (it installs every package in scripts/programs.txt)." >&2
  exit 1
fi
echo "==> all $(grep -cvE '^\s*(#|$)' programs.txt) programs in scripts/programs.txt are installed"
