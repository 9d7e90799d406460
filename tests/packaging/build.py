"""Building what the packaging tests install: the wheel and sdist (``python -m build``), the Debian
package (``packaging/build-deb.sh``, what ``make deb`` runs) and a fresh Debian root (mmdebstrap).

The root is cached as a tarball under ``$XDG_CACHE_HOME/saru-test/`` (``~/.cache/saru-test/``), named
after a hash of everything that decides its content — the package list, the suite, the apt sources
and the mmdebstrap version — so a rerun (CI on the same machine, a developer's second run) reuses it and
a change of the list makes a new one (older roots are deleted). Every step is bounded in time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: what the fresh root holds besides Debian's minimal base: systemd as PID 1, what the package depends
#: on and recommends (python3 3.11, libnftables1, iproute2, logrotate), nftables for the nft data plane,
#: procps and kmod for the tests' look at processes, netbase (/etc/protocols), python3-firewall to parse
#: the firewalld service, bird2 (suggested) for ``[bgp]`` under the unit and as the test's router
ROOT_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "iproute2", "libnftables1", "nftables", "logrotate",
    "procps", "kmod", "netbase", "python3-firewall", "bird2",
)
#: seconds each step took in this session (printed at the end of the run by conftest.py)
TIMINGS: dict[str, float] = {}
BUILD_TIMEOUT = 600  # seconds for one build (wheel, .deb)
ROOT_TIMEOUT = 900  # seconds for mmdebstrap


class BuildError(RuntimeError):
    """A build step failed; the message ends with the tail of its output."""


def run_logged(argv: list[str], log: Path, timeout: float, cwd: Path = ROOT, **kwargs: object) -> None:
    """Run ``argv`` with its output in ``log``; ``BuildError`` with the log's tail when it fails."""
    with log.open("w") as out:
        try:
            proc = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False, **kwargs)  # type: ignore[call-overload]
        except subprocess.TimeoutExpired:
            raise BuildError(f"{' '.join(argv)} took more than {timeout}s; log: {log}") from None
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise BuildError(f"{' '.join(argv)} failed ({proc.returncode}); log {log}:\n{tail}")


def build_wheel(out: Path) -> tuple[Path, Path]:
    """``python -m build`` (sdist, then the wheel from the sdist) into ``out``: (wheel, sdist)."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    run_logged([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], out / "build.log", BUILD_TIMEOUT)
    TIMINGS["wheel and sdist build"] = time.monotonic() - started
    return next(out.glob("saru-*.whl")), next(out.glob("saru-*.tar.gz"))


def build_deb(out: Path) -> Path:
    """The .deb, built by ``packaging/build-deb.sh OUT`` (what ``make deb`` runs) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    run_logged(["sh", str(ROOT / "packaging" / "build-deb.sh"), str(out)], out / "build.log", BUILD_TIMEOUT)
    TIMINGS["deb build (make deb)"] = time.monotonic() - started
    return next(out.glob("saru_*.deb"))


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "saru-test"


def host_codename() -> str:
    """The Debian suite of this machine (the root is made of the same release)."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise BuildError("/etc/os-release names no VERSION_CODENAME: not a Debian machine?")


def apt_sources(codename: str) -> str:
    """This machine's enabled apt sources for ``codename`` (and its -updates, -security), deb822 or
    one-line, as mmdebstrap reads them from stdin; empty: let mmdebstrap use its default mirror."""
    suites = {codename, f"{codename}-updates", f"{codename}-security"}
    parts: list[str] = []
    files = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in files:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and line[:1].isalpha())
            if fields.get("Enabled", "yes").strip() == "no":
                continue
            if suites & set(fields.get("Suites", "").split()) and "deb" in fields.get("Types", "").split():
                parts.append(stanza.strip())
    one_line = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.exists():
            for line in path.read_text().splitlines():
                words = line.split("#", 1)[0].split()
                if words[:1] == ["deb"] and suites & set(words):
                    parts.append(line.strip())
    return "\n\n".join(parts) + ("\n" if parts else "")


def mmdebstrap_version() -> str:
    proc = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=False, timeout=30)
    return proc.stdout.strip()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def debian_root_tarball(packages: tuple[str, ...] = ROOT_PACKAGES) -> tuple[Path, float]:
    """The cached root tarball (made now if missing) and the seconds it took to make (0: cached)."""
    codename = host_codename()
    sources = apt_sources(codename)
    key = hashlib.sha256("\n".join([codename, *sorted(packages), sources, mmdebstrap_version()]).encode())
    directory = cache_dir()
    tarball = directory / f"debian-root-{codename}-{key.hexdigest()[:16]}.tar"
    with _locked(directory / "root.lock"):
        if tarball.exists():
            TIMINGS["Debian root (mmdebstrap): cached"] = 0.0
            return tarball, 0.0
        for old in directory.glob("debian-root-*.tar*"):
            old.unlink()
        partial = tarball.with_suffix(".tar.partial")
        started = time.monotonic()
        argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}",
                "--format=tar", codename, str(partial)]
        if sources:
            argv.append("-")
        log = directory / "mmdebstrap.log"
        try:
            with log.open("w") as out:
                proc = subprocess.run(argv, input=sources, text=True, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=ROOT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            partial.unlink(missing_ok=True)
            raise BuildError(f"mmdebstrap took more than {ROOT_TIMEOUT}s; log: {log}") from None
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise BuildError(f"mmdebstrap failed ({proc.returncode}); log {log}:\n{tail}")
        partial.rename(tarball)
        TIMINGS["Debian root (mmdebstrap)"] = time.monotonic() - started
        return tarball, TIMINGS["Debian root (mmdebstrap)"]


def extract(tarball: Path, target: Path) -> None:
    """Unpack a root tarball (numeric owners, as made) into ``target``."""
    target.mkdir(parents=True)
    subprocess.run(["tar", "--numeric-owner", "-xpf", str(tarball), "-C", str(target)], check=True, timeout=300)


def tools_missing(*tools: str) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]
