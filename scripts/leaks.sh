#!/usr/bin/env bash
# Lists kernel objects and processes that a test or demo may have left behind:
# network namespaces, links other than the machine's own, nftables tables,
# overlay/tmpfs mounts under the runtime folders, containers' cgroups, and leftover daemons.
# Exit 0 when nothing is left, 1 otherwise. Run it before and after the suite;
# scripts/run-tests.mjs runs it after, so every clone checks on its own.
set -u
left=0
say() { printf '%s\n' "$*"; left=1; }

ns=$(ip netns list 2>/dev/null | awk '{print $1}')
for n in $ns; do say "netns: $n"; done

base_links='^(lo|eth[0-9]+|ifb[0-9]+)$'
while read -r name; do
  [[ "$name" =~ $base_links ]] || say "link (root ns): $name"
done < <(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1)

if command -v nft >/dev/null 2>&1; then
  while read -r t; do [ -n "$t" ] && say "nft (root ns): $t"; done < <(nft list tables 2>/dev/null)
fi

while read -r m; do say "mount: $m"; done < <(awk '$2 ~ /(cove|lab)/ {print $2}' /proc/mounts 2>/dev/null)

# Cgroups of containers (v1 hierarchies: /sys/fs/cgroup/<controller>/cove/<id>) left after their container.
for d in /sys/fs/cgroup/*/cove/*/; do
  [ -d "$d" ] && say "cgroup: ${d%/}"
done 2>/dev/null

# A <defunct> entry has already exited and only waits for init to reap it
# (conmon double-forks): it holds nothing, so it is not left behind.
while read -r p; do say "process: $p"; done < <(ps -eo pid=,args= 2>/dev/null | grep -E '(coved|cove-daemon|conmon|crun|etcd|wireguard-go|docker-registry|aardvark|dockerd)' | grep -v -E 'grep|leaks|<defunct>')

[ "$left" = 0 ] && echo "nothing left behind"
exit "$left"
