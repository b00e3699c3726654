#!/usr/bin/env bash
# Builds Cove's local base images from Debian's busybox-static, as docker-archive tars
# (`cove load -i` or `docker load -i`), with no network:
#   OUTDIR/alpine.tar  alpine:latest + busybox:latest  (busybox and every applet link, CMD ["/bin/sh"])
#   OUTDIR/nginx.tar   nginx:latest, a STAND-IN for nginx: the same rootfs serving /www with `busybox httpd`
# Deterministic: same busybox binary in, same bytes (and image IDs) out.
set -euo pipefail

OUTDIR=${1:?usage: build-images.sh OUTDIR}
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || { echo "build-images: $BUSYBOX not found (apt-get install busybox-static)" >&2; exit 1; }
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

PATH_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# The images are as old as the busybox they carry: reproducible, and not "56 years ago".
CREATED=$(date -u -r "$(readlink -f /bin/busybox)" +%Y-%m-%dT%H:%M:%SZ)

# A reproducible tar of a directory: sorted names, fixed times and owners.
tar_dir() { # SRC DEST
  (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) |
    tar --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu --no-recursion -C "$1" -cf "$2" -T -
}

make_base_rootfs() { # DIR
  local root=$1
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/sbin,etc,root,tmp,var/log,var/run,proc,sys,dev,www}
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  install -m 0755 "$BUSYBOX" "$root/bin/busybox"
  # Every applet at the path busybox itself says it lives at.
  "$BUSYBOX" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n' >"$root/etc/group"
  : >"$root/etc/hosts"
  : >"$root/etc/hostname"
  : >"$root/etc/resolv.conf"
  rmdir "$root/www"
}

# write_archive NAME ROOTFS CONFIG_JSON TAGS_JSON_ARRAY
write_archive() {
  local name=$1 root=$2 cfg=$3 tags=$4
  local dir="$WORK/$name-archive"
  mkdir -p "$dir"
  tar_dir "$root" "$WORK/$name-layer.tar"
  local diff
  diff=$(sha256sum "$WORK/$name-layer.tar" | cut -d' ' -f1)
  mkdir -p "$dir/$diff"
  mv "$WORK/$name-layer.tar" "$dir/$diff/layer.tar"
  printf '1.0' >"$dir/$diff/VERSION"
  jq -cn --argjson config "$cfg" --arg diff "sha256:$diff" --arg created "$CREATED" '{
      architecture: "amd64", os: "linux", created: $created,
      config: $config,
      rootfs: { type: "layers", diff_ids: [ $diff ] },
      history: [ { created: $created, created_by: "scripts/build-images.sh (busybox-static rootfs)" } ]
    }' | tr -d '\n' >"$dir/config.json"
  local id
  id=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
  mv "$dir/config.json" "$dir/$id.json"
  jq -cn --arg cfg "$id.json" --arg layer "$diff/layer.tar" --argjson tags "$tags" \
    '[ { Config: $cfg, RepoTags: $tags, Layers: [ $layer ] } ]' | tr -d '\n' >"$dir/manifest.json"
  jq -cn --argjson tags "$tags" --arg id "$diff" \
    'reduce ($tags[] | split(":")) as $t ({}; .[$t[0]] += { ($t[1]): $id })' | tr -d '\n' >"$dir/repositories"
  tar_dir "$dir" "$OUTDIR/$name.tar"
  echo "$name.tar: sha256:$id $(jq -r 'join(" ")' <<<"$tags")"
}

# alpine (and busybox): the plain busybox rootfs.
make_base_rootfs "$WORK/alpine"
write_archive alpine "$WORK/alpine" \
  "$(jq -cn --arg path "$PATH_ENV" '{Env: [$path], Cmd: ["/bin/sh"], Labels: {"org.cove.image": "busybox-static rootfs standing in for alpine"}}')" \
  '["alpine:latest","busybox:latest"]'

# nginx: a stand-in web server (busybox httpd), labelled as such.
make_base_rootfs "$WORK/nginx"
mkdir -p "$WORK/nginx/www"
cat >"$WORK/nginx/www/index.html" <<'EOF'
<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>This is Cove's stand-in for nginx: busybox httpd serving /www (no real nginx inside).</p>
</body>
</html>
EOF
write_archive nginx "$WORK/nginx" \
  "$(jq -cn --arg path "$PATH_ENV" '{
      Env: [$path], Cmd: ["busybox","httpd","-f","-p","80","-h","/www"], ExposedPorts: {"80/tcp": {}},
      StopSignal: "SIGTERM",
      Labels: {"org.cove.image": "stand-in for nginx: busybox httpd -f -p 80 -h /www", "org.cove.stand-in": "true"}
    }')" \
  '["nginx:latest"]'
