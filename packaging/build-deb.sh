#!/bin/sh
# `make deb`: build Saru's Debian package with Debian's tools (debhelper, dh-virtualenv) from this
# tree — its tracked and new files, not the ignored ones (.venv, build/…) — in build/deb/, and copy
# the .deb to dist/ (or to OUTDIR, building in OUTDIR/work: packaging/build-deb.sh [OUTDIR]).
# Prints the .deb's path last. The build dependencies are installed by the Makefile
# (tools/install-debian-packages.sh); dpkg-buildpackage checks them.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
if [ $# -gt 0 ]; then
	mkdir -p "$1"
	out=$(cd "$1" && pwd)
	work="$out/work"
else
	out="$here/dist"
	work="$here/build/deb"
fi
src="$work/saru-$version"
rm -rf "$work"
mkdir -p "$src" "$out"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	git ls-files -z --cached --others --exclude-standard \
		| (cd "$here" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
		| tar --null -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude=./build --exclude=./dist --exclude=./.venv --exclude=./.venv-demo --exclude=.git -cf - . \
		| tar -xf - -C "$src"
fi
(cd "$src" && dpkg-buildpackage -b -us -uc --no-sign)
deb=$(ls "$work"/saru_"$version"_*.deb)
cp "$deb" "$out/"
echo "$out/$(basename "$deb")"
