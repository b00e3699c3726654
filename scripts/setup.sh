#!/usr/bin/env bash
# Installs what Cove needs on a fresh Debian 12 machine (as root), builds it,
# builds the demo images, and puts `cove` and `coved` on PATH. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(runc conmon nftables iproute2 busybox-static util-linux procps jq docker-compose tcpdump iputils-ping iperf3)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Package scripts must not start services in the root namespace.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v docker >/dev/null || echo "note: the docker CLI is not installed; tests that drive Cove with it will be skipped"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # `npm install`, not `npm ci`: node-unix-socket lists prebuilt packages for
  # other platforms that the registry here does not serve, and `npm ci` refuses
  # a lock file without them. The lock file still pins every version.
  echo "==> npm install"
  npm install --no-audit --no-fund --loglevel=error
fi
echo "==> build"
npm run -s build
echo "==> demo images"
bash scripts/build-images.sh build/images >/dev/null
ln -sf "$PWD/bin/cove" /usr/local/bin/cove
ln -sf "$PWD/bin/coved" /usr/local/bin/coved
echo "==> ready: cove $(node -p "require('./package.json').version")"
