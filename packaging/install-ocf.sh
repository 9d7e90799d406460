#!/bin/sh
# Install Saru's OCF resource agents (ocf:saru:director, ocf:saru:VIPcheck).
#
#   packaging/install-ocf.sh [OCF_ROOT]
#
# Copies ocf/saru/* to $OCF_ROOT/resource.d/saru/ (mode 0755). OCF_ROOT is the first argument,
# else the OCF_ROOT environment variable, else /usr/lib/ocf (Pacemaker's compiled-in root).
# Idempotent. The agents call `saru` / `saru-ldirectord`: give the director resource
# binary=/absolute/path/to/saru when Saru is not on Pacemaker's PATH (e.g. in a virtualenv).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
source_dir="$here/../ocf/saru"
root=${1:-${OCF_ROOT:-/usr/lib/ocf}}
target="$root/resource.d/saru"

if [ ! -d "$source_dir" ]; then
	echo "install-ocf.sh: $source_dir not found (run it from a Saru source tree)" >&2
	exit 1
fi
if [ ! -d "$root/resource.d" ]; then
	echo "install-ocf.sh: $root/resource.d does not exist; is resource-agents/pacemaker installed?" >&2
	exit 1
fi
mkdir -p "$target"
for agent in "$source_dir"/*; do
	[ -f "$agent" ] || continue
	name=$(basename "$agent")
	cp "$agent" "$target/$name.new"
	chmod 0755 "$target/$name.new"
	mv -f "$target/$name.new" "$target/$name"
	echo "installed ocf:saru:$name -> $target/$name"
done
