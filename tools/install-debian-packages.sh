#!/bin/sh
# Installs the Debian packages named as arguments when they are missing and we are root.
# Without root, missing packages are reported and the tests that need them fail loudly in CI.
set -eu
missing=""
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Routing daemons (bird2, for [bgp] and the BGP bed) must not start host-wide on install: a
    # policy-rc.d (invoke-rc.d and deb-systemd-invoke ask it) refuses their start, only for the
    # duration of this install and only when the host has no policy of its own.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\n# written by saru tools/install-debian-packages.sh for one install\n%s\n' \
            'for a in "$@"; do case "$a" in bird|bird6|frr|gobgpd|exabgp) exit 101;; esac; done; exit 0' > "$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    echo "warning: missing Debian packages:$missing (run as root, or install them yourself)" >&2
fi
