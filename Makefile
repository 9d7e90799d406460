# Saru — `make demo` and `make test` set everything up themselves on a fresh Debian machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# `make demo` gets its own environment with Saru alone (no test extras), rebuilt when the sources change.
DEMO_VENV := .venv-demo
SOURCES   := $(shell find saru -name '*.py')
# Real servers the tests run (one per protocol Saru checks) and the tools the benchmarks use.
DEBIAN_PACKAGES := nginx haproxy wrk curl openssl iputils-ping perl socat \
	vsftpd tinyproxy opensmtpd dnsmasq-base sip-tester freeradius freeradius-utils \
	slapd ldap-utils mariadb-server postgresql dovecot-imapd dovecot-pop3d leafnode \
	nftables libnftables1 iproute2 \
	qemu-system-x86 linux-image-amd64 busybox-static ipvsadm kmod \
	ldirectord keepalived pacemaker corosync crmsh resource-agents pacemaker-cli-utils libxml2-utils tcpdump \
	man-db groff-base chromium chromium-driver prometheus firewalld strace bird2
# (ldirectord: the original, run by the differential test and the benchmarks; keepalived: the VRRP peer of
# the HA tests; pacemaker…: the real cluster of the Pacemaker tests; tcpdump: wire checks; man-db,
# groff-base: the generated man pages are rendered with warnings on; chromium, chromium-driver: the
# dashboard's test drives a real headless browser through Selenium, nothing downloaded at run time;
# prometheus: a real Prometheus scrapes a running daemon; firewalld: saru doctor asks a real firewalld, run
# by the test with a D-Bus bus of its own in a namespace. Debian's firewalld ships only a systemd unit:
# in a container without systemd installing it starts nothing; on a host booted with systemd, apt would
# start it on the host — `systemctl mask firewalld` before `make deps` there; strace:
# bench/proxy_syscalls.py counts the proxy's and haproxy's system calls per request; bird2: the routing
# daemon [bgp] drives, and the BGP bed's ECMP router (tests/bgp); tools/install-debian-packages.sh keeps
# its package from starting a host-wide bird (a policy-rc.d for the install), the tests run their own in
# namespaces.)
# The Debian package's build (`make deb`) and the packaging tests (tests/packaging: lintian, a fresh
# Debian root made by mmdebstrap, booted with systemd as PID 1 by systemd-nspawn).
DEB_BUILD_PACKAGES := build-essential dpkg-dev debhelper dh-virtualenv python3 python3-venv
DEBIAN_PACKAGES += $(DEB_BUILD_PACKAGES) lintian mmdebstrap systemd-container


.PHONY: demo test fuzz lint deps venv demo-venv bench clean man completion deb soak

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { sh tools/install-debian-packages.sh python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo-venv: $(DEMO_VENV)/.installed

$(DEMO_VENV)/.installed: pyproject.toml $(SOURCES)
	$(PYTHON) -m venv $(DEMO_VENV) || { sh tools/install-debian-packages.sh python3-venv && $(PYTHON) -m venv $(DEMO_VENV); }
	$(DEMO_VENV)/bin/python -m pip install -q --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install -q .
	touch $@

deps:
	@sh tools/install-debian-packages.sh $(DEBIAN_PACKAGES)

demo: demo-venv
	$(DEMO_VENV)/bin/saru demo

test: deps venv
	$(VENV)/bin/ruff check saru tests bench
	$(VENV)/bin/mypy saru
	$(PY) -m pytest -q -ra --durations=15

# The fuzz tier (tests/fuzz) runs in `make test` with a small fixed set of examples (the "ci" Hypothesis
# profile, derandomized: a failure reproduces); `make fuzz` runs it with the "long" profile, random and 20
# times the examples (about 10 minutes; SARU_FUZZ_SCALE=N for more), keeping what it finds in .hypothesis/.
fuzz: deps venv
	SARU_FUZZ_PROFILE=long $(PY) -m pytest -q -ra --durations=15 --timeout=3600 tests/fuzz

# The benches' daemons run as root like the suite's (tests/conftest.py): no privilege drop.
bench: export SARU_DROP_PRIVILEGES = 0
bench: export SARU_COMMAND_USER = root
bench: deps venv
	$(PY) bench/checks_bench.py
	$(PY) bench/https_checks_bench.py
	$(PY) bench/checks_protocols.py
	$(PY) bench/proxy_bench.py
	$(PY) bench/proxy_syscalls.py
	$(PY) bench/ldirectord_compare.py
	$(PY) bench/dataplane_update.py
	$(PY) bench/ipvs_update.py --user-only --sizes 10000
	$(PY) bench/forwarding.py
	$(PY) bench/failover.py
	$(PY) bench/dashboard_bench.py
	$(PY) bench/api_bench.py
	$(PY) bench/metrics_scrape.py
	$(PY) bench/scaleout.py
	$(PY) bench/disruption.py
	$(PY) bench/scale.py

# The soak (docs/reliability.md): 10,000 reals, 1 % flapping, checks every second, 15 minutes; resources
# printed every minute must stay flat and the table must end without drift. `make test` runs 3 minutes.
soak: deps venv
	$(PY) -m tests.soak.soak --minutes 15 --json bench/results/soak.json

# The man pages (man/) and the bash completion (completion/) are generated from the argument parser and
# docs/settings.md; tests/unit/test_docgen.py fails when the committed files are out of date.
man: venv
	$(PY) -m saru.docgen --only man

completion: venv
	$(PY) -m saru.docgen --only completion

# The Debian package (dist/saru_<version>_<arch>.deb), built with debhelper and dh-virtualenv; see
# docs/install.md. Then: apt install ./dist/saru_*.deb
deb:
	@sh tools/install-debian-packages.sh $(DEB_BUILD_PACKAGES)
	sh packaging/build-deb.sh

clean:
	rm -rf $(VENV) $(DEMO_VENV) .pytest_cache .mypy_cache build dist *.egg-info saru/data
