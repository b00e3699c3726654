#!/usr/bin/env bash
# Installs what Cove needs on a fresh Debian 12 machine (as root), builds it,
# builds the demo images, and puts `cove` and `coved` on PATH. Idempotent.
# The Debian packages are those named in scripts/programs.txt (every external
# program the code and tests run); scripts/check-programs.sh checks them after.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t APT_PACKAGES < <(awk '!/^[[:space:]]*(#|$)/ && $2 != "nodejs" {print $2}' scripts/programs.txt | sort -u)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start services (etcd, the registry) in the root
  # namespace: tests start their own inside lab namespaces. invoke-rc.d and
  # deb-systemd-invoke ask policy-rc.d first; exit 101 means "do not start".
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from cove scripts/setup.sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  services() { ps -eo pid=,comm= | awk '$2 == "etcd" || $2 == "docker-registry" || $2 == "registry" {print $1}'; }
  before=$(services)
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Belt and braces: stop (by PID) any such service that the install started anyway.
  for pid in $(services); do
    grep -qx "$pid" <<<"$before" && continue
    echo "==> stopping $(cat /proc/"$pid"/comm 2>/dev/null) (pid $pid), started by a package script"
    kill "$pid" 2>/dev/null || true
  done
fi
# Nor may they start at the next boot: Cove's tests run their own etcd members
# and registries inside lab namespaces, never the packaged services.
for unit in etcd docker-registry; do
  [ -e "/etc/systemd/system/multi-user.target.wants/$unit.service" ] || continue
  if command -v systemctl >/dev/null; then
    systemctl is-active -q "$unit" 2>/dev/null && systemctl stop "$unit" || true
    systemctl disable -q "$unit" 2>/dev/null || true
  fi
  rm -f "/etc/systemd/system/multi-user.target.wants/$unit.service"
done
command -v docker >/dev/null || echo "note: the docker CLI is not installed; tests that drive Cove with it will be skipped"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # Exactly what the lock file pins (no package with prebuilt per-platform
  # binaries: Cove's own addon in native/ is built from source below).
  echo "==> npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "==> build"
npm run -s build
echo "==> demo images"
bash scripts/build-images.sh build/images >/dev/null
ln -sf "$PWD/bin/cove" /usr/local/bin/cove
ln -sf "$PWD/bin/coved" /usr/local/bin/coved
echo "==> ready: cove $(node -p "require('./package.json').version")"
