"""Run one command as root inside a throw-away QEMU guest booted from the host's Debian kernel.

The tests of the IPVS data plane need a kernel with IPVS; the CI host's own kernel may have none
and may forbid loading modules. So this module boots Debian's ``linux-image-amd64`` kernel (which
has IPVS as modules) under ``qemu-system-x86_64`` and runs ONE command in it:

* machine ``microvm``, 1 vCPU, no network card at all (nothing the guest does can leave it);
  TCG software emulation unless the CPU really has VT-x/AMD-V (a ``/dev/kvm`` alone is not enough:
  nested hypervisors expose one that cannot run a stock kernel);
* the kernel is decompressed once (cached) and booted through its PVH entry point, which skips the
  slow in-guest decompressor; ``tsc_early_khz`` is passed because microvm has no timer to
  calibrate the TSC against;
* a small initramfs (built once in Python, cached; keyed on this file, busybox and modules.dep)
  holds a static busybox and the modules that reach the root: virtio-mmio, 9p, overlay — loaded in
  ``modules.dep`` order;
* the host's ``/`` is mounted read-only over 9p with a tmpfs overlay on top (the guest may write
  anywhere; everything vanishes at power-off); fresh ``/proc``, ``/sys``, ``/dev``, ``/run``;
* a private run directory is shared read-write: the command script goes in, its output, start
  marker and exit status come back; the guest powers off through sysrq when the command ends.

Debian packages: ``qemu-system-x86``, ``linux-image-amd64``, ``busybox-static``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Modules needed to mount the root (their dependencies are added from modules.dep).
ROOT_MODULES = ("virtio_mmio", "9pnet_virtio", "9p", "overlay")
TCG_CPU = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+lahf_lm,+rdrand"  # x86-64-v2 + RDRAND
QEMU = "qemu-system-x86_64"
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
MSIZE = 512000

INIT = r"""#!/bin/busybox sh
# stage 1 (PID 1 in the initramfs): reach the host's root and switch to it
/bin/busybox mkdir -p /bin /proc /sys /dev
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
fail() { echo "saru-vm init: FATAL: $*"; dmesg | tail -n 20; echo o > /proc/sysrq-trigger; sleep 30; }
for m in $(cat /modules.list); do insmod "/modules/$m.ko" || echo "saru-vm init: insmod $m failed"; done
RUN=
for arg in $(cat /proc/cmdline); do case "$arg" in saruvm.run=*) RUN="${arg#saruvm.run=}";; esac; done
[ -n "$RUN" ] || fail "no saruvm.run= on the kernel command line"
mkdir -p /lower /scratch /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=@MSIZE@,cache=loose hostroot /lower \
    || fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=755 tmpfs /scratch
mkdir -p /scratch/upper /scratch/work
mount -t overlay -o lowerdir=/lower,upperdir=/scratch/upper,workdir=/scratch/work overlay /newroot \
    || fail "cannot mount the overlay"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=755 tmpfs /newroot/run
mkdir -p "/newroot$RUN" /newroot/run/saru-vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=@MSIZE@,cache=mmap saruvmrun "/newroot$RUN" \
    || fail "cannot mount the run directory"
cp /bin/busybox /stage2 /newroot/run/saru-vm/
exec switch_root /newroot /run/saru-vm/busybox sh /run/saru-vm/stage2 "$RUN"
""".replace("@MSIZE@", str(MSIZE))

STAGE2 = r"""# stage 2 (PID 1 on the host's files): run the command, report its status, power off
RUN="$1"
BB=/run/saru-vm/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
$BB hostname saru-vm
$BB ip link set lo up
$BB ln -sf /proc/self/fd /dev/fd
echo 1 > /proc/sys/kernel/sysrq
for m in $(cat "$RUN/modules"); do
    modprobe "$m" >>"$RUN/output" 2>&1 || echo "saru-vm: modprobe $m failed" >>"$RUN/output"
done
$BB cut -d' ' -f1 /proc/uptime > "$RUN/started"
/bin/sh "$RUN/command.sh" </dev/null >>"$RUN/output" 2>&1 &
# busybox's wait also reaps the orphans re-parented to PID 1 meanwhile
wait $!
echo $? > "$RUN/rc.tmp" && $BB mv "$RUN/rc.tmp" "$RUN/rc"
$BB sync
echo o > /proc/sysrq-trigger
$BB sleep 30
"""


class VmUnavailable(RuntimeError):
    """Something the guest needs is missing on this host."""


@dataclass(frozen=True)
class VmResult:
    """What one guest run produced."""

    returncode: int  # the command's exit status; 124 on timeout; 125 when the guest died
    output: str  # the command's stdout and stderr, interleaved
    console: str  # the guest's serial console (kernel and init messages)
    boot_seconds: float | None  # host time from qemu start to the command's start
    total_seconds: float
    accel: str


# --------------------------------------------------------------------------------------------------
# host prerequisites
# --------------------------------------------------------------------------------------------------


def find_busybox() -> str | None:
    for path in BUSYBOX_PATHS:
        if os.path.isfile(path) and _is_static(path):
            return path
    return None


def _is_static(path: str) -> bool:
    """An ELF without a PT_INTERP program header."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff = int.from_bytes(head[32:40], "little")
        entsize = int.from_bytes(head[54:56], "little")
        count = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(entsize * count)
    return all(int.from_bytes(table[i : i + 4], "little") != 3 for i in range(0, len(table), entsize))


def find_kernel() -> tuple[str, str] | None:
    """(bzImage path, release) of the newest /boot kernel whose modules are installed."""
    override = os.environ.get("SARU_VM_KERNEL")
    candidates = [override] if override else [str(p) for p in Path("/boot").glob("vmlinuz-*")]
    found = []
    for path in candidates:
        release = os.path.basename(path).removeprefix("vmlinuz-")
        if os.path.isfile(path) and os.path.isfile(f"/lib/modules/{release}/modules.dep"):
            found.append((os.path.getmtime(path), path, release))
    if not found:
        return None
    _, path, release = max(found)
    return path, release


def missing_prerequisites() -> list[str]:
    """What this host lacks to boot the guest (empty when everything is there)."""
    missing = []
    if shutil.which(QEMU) is None:
        missing.append(f"{QEMU} (apt-get install qemu-system-x86)")
    if find_kernel() is None:
        missing.append("a kernel in /boot with its modules (apt-get install linux-image-amd64)")
    if find_busybox() is None:
        missing.append("a static busybox (apt-get install busybox-static)")
    return missing


def kvm_usable() -> bool:
    """Real VT-x/AMD-V only: a nested hypervisor's /dev/kvm may not run a stock kernel."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"^flags\s*:.*\b(vmx|svm)\b", cpuinfo, re.M) is not None


def tsc_khz() -> int:
    """The host's TSC rate, which is the guest's under TCG (microvm cannot calibrate it)."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/tsc_freq_khz").read_text())
    except (OSError, ValueError):
        pass
    try:
        match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return int(float(match.group(1)) * 1000)
    except OSError:
        pass
    return 2_000_000


# --------------------------------------------------------------------------------------------------
# cached boot images
# --------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("SARU_VM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "saru-vm"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def pvh_vmlinux(kernel: str) -> str:
    """The ELF vmlinux inside a bzImage (decompressed once), or the bzImage if none is found."""
    st = os.stat(kernel)
    key = hashlib.sha256(f"{kernel}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    path = cache_dir() / f"vmlinux-{key}"
    if path.exists():
        return str(path)
    data = Path(kernel).read_bytes()
    for magic, unpack in ((b"\xfd7zXZ\x00", _unxz), (b"\x1f\x8b\x08\x00", _gunzip)):
        start = data.find(magic)
        while start != -1:
            elf = unpack(data[start:])
            if elf is not None and elf[:4] == b"\x7fELF":
                _atomic_write(path, elf)
                return str(path)
            start = data.find(magic, start + 1)
    return kernel


def _unxz(data: bytes) -> bytes | None:
    try:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    except lzma.LZMAError:
        return None


def _gunzip(data: bytes) -> bytes | None:
    try:
        return gzip.GzipFile(fileobj=io.BytesIO(data)).read()
    except (OSError, EOFError):
        return None


class _Cpio:
    """A newc cpio archive built in memory (no cpio binary, no root needed for device nodes)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = [self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
        self.inode += 1
        self.buf.write(b"070701" + b"".join(b"%08x" % f for f in fields) + encoded)
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def module_load_order(release: str, wanted: Sequence[str]) -> list[tuple[str, str]]:
    """(name, file) of the wanted modules and their dependencies, dependencies first."""
    base = f"/lib/modules/{release}"
    table: dict[str, tuple[str, list[str]]] = {}
    by_path: dict[str, str] = {}
    for line in Path(base, "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        name = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", os.path.basename(path)).replace("-", "_")
        table[name] = (path, deps.split())
        by_path[path] = name
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in table:
            return  # built in, or already queued
        seen.add(name)
        path, deps = table[name]
        for dep in reversed(deps):  # modprobe loads the last-listed dependency first
            visit(by_path.get(dep, ""))
        order.append((name, os.path.join(base, path)))

    for name in wanted:
        visit(name.replace("-", "_"))
    return order


def _module_bytes(path: str) -> bytes:
    data = Path(path).read_bytes()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
    return data


def initramfs(release: str, busybox: str) -> str:
    """The cached initramfs for this kernel release (rebuilt when this file or its inputs change)."""
    key = hashlib.sha256(Path(__file__).read_bytes())
    for part in (release, busybox, str(os.stat(busybox).st_mtime_ns),
                 str(os.stat(f"/lib/modules/{release}/modules.dep").st_mtime_ns)):
        key.update(part.encode())
    path = cache_dir() / f"initramfs-{release}-{key.hexdigest()[:16]}.cpio"
    if path.exists():
        return str(path)
    archive = _Cpio()
    for directory in ("bin", "dev", "proc", "sys", "modules", "lower", "scratch", "newroot"):
        archive.directory(directory)
    archive.chardev("dev/console", 5, 1)
    archive.chardev("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    archive.file("init", INIT.encode(), 0o755)
    archive.file("stage2", STAGE2.encode())
    names = []
    for name, module in module_load_order(release, ROOT_MODULES):
        archive.file(f"modules/{name}.ko", _module_bytes(module))
        names.append(name)
    archive.file("modules.list", ("\n".join(names) + "\n").encode())
    _atomic_write(path, archive.finish())
    return str(path)


# --------------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------------


def _command_script(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    lines = ["# written by tests/vm/harness.py"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    lines.append(f"cd {shlex.quote(cwd)} || exit 126")
    lines.append("exec " + shlex.join(argv))
    return "\n".join(lines) + "\n"


def _qemu_args(kernel: str, initrd: str, run: str, accel: str, memory_mb: int) -> list[str]:
    append = (
        f"console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init saruvm.run={run} "
        f"random.trust_cpu=on mitigations=off nokaslr tsc=reliable no_timer_check tsc_early_khz={tsc_khz()}"
    )
    accel_args = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else [
        "-accel", "tcg,tb-size=256", "-cpu", TCG_CPU]
    shares = [("hostroot", "/", True), ("saruvmrun", run, False)]
    args = [
        QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        *accel_args, "-smp", "1", "-m", str(memory_mb),
        "-machine", "microvm,isa-serial=on", "-global", "virtio-mmio.force-legacy=false",
        "-kernel", kernel, "-initrd", initrd, "-append", append,
        "-serial", f"file:{run}/console", "-nic", "none",
    ]
    for tag, path, readonly in shares:
        options = f"local,id={tag},path={path.replace(',', ',,')},security_model=none,multidevs=remap"
        args += ["-fsdev", options + (",readonly=on" if readonly else ""),
                 "-device", f"virtio-9p-device,fsdev={tag},mount_tag={tag}"]
    return args


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _boot_once(args: list[str], run: Path, deadline: float, boot_deadline: float) -> tuple[str, float | None]:
    """Boot and wait; returns (status, seconds to the command's start)."""
    for name in ("output", "console", "started", "rc", "rc.tmp"):
        (run / name).unlink(missing_ok=True)
    (run / "output").write_bytes(b"")
    t0 = time.monotonic()
    started: float | None = None
    with open(run / "qemu.log", "wb") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        try:
            while True:
                if started is None and (run / "started").exists():
                    started = time.monotonic() - t0
                if proc.poll() is not None:
                    return ("done" if (run / "rc").exists() else "died"), started
                now = time.monotonic()
                if now > deadline:
                    return "timeout", started
                if started is None and now > boot_deadline:
                    return "boot-timeout", started
                time.sleep(0.05)  # polling the guest's marker files with a deadline
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def run_in_vm(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    modules: Sequence[str] = (),
    timeout: float = 600.0,
    boot_timeout: float = 60.0,
    boot_retries: int = 1,
    memory_mb: int = 1024,
) -> VmResult:
    """Boot a guest, run ``argv`` as root in ``cwd`` with exactly ``env`` (plus PATH/HOME if
    missing), power off, and return what happened. ``modules`` are modprobe'd first.

    A guest that hangs or dies before the command started is booted again (``boot_retries``);
    never once the command has run.
    """
    missing = missing_prerequisites()
    if missing:
        raise VmUnavailable("cannot boot the test guest, missing: " + "; ".join(missing))
    found = find_kernel()
    busybox = find_busybox()
    assert found is not None and busybox is not None
    bzimage, release = found
    kernel = pvh_vmlinux(bzimage)
    initrd = initramfs(release, busybox)
    accel = os.environ.get("SARU_VM_ACCEL") or ("kvm" if kvm_usable() else "tcg")
    full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
                "LANG": "C.UTF-8", **(env or {})}
    t0 = time.monotonic()
    run = Path(tempfile.mkdtemp(prefix="saru-vm."))
    try:
        run.chmod(0o755)
        (run / "command.sh").write_text(_command_script(argv, cwd or os.getcwd(), full_env))
        (run / "modules").write_text("".join(f"{m}\n" for m in modules))
        args = _qemu_args(kernel, initrd, str(run), accel, memory_mb)
        deadline = t0 + timeout
        status, started = "died", None
        for _attempt in range(boot_retries + 1):
            status, started = _boot_once(args, run, deadline, time.monotonic() + boot_timeout)
            if status in ("done", "timeout") or started is not None:
                break
        output = _read(run / "output")
        console = _read(run / "console")[-8000:] + _read(run / "qemu.log")[-2000:]
        if status == "done":
            code = int(_read(run / "rc").strip() or 125)
        elif status == "timeout":
            code = 124
        else:
            code = 125
        return VmResult(code, output, console, started, time.monotonic() - t0, accel)
    finally:
        shutil.rmtree(run, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.vm.harness [-m MODULE]... [--timeout S] -- COMMAND...`` (for developers)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.vm.harness", description=main.__doc__)
    parser.add_argument("-m", "--module", action="append", default=[], help="modprobe this first")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("-v", "--console", action="store_true", help="print the guest console too")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    result = run_in_vm(args.command, modules=args.module, timeout=args.timeout,
                       env={"SARU_IN_VM": "1", "TERM": os.environ.get("TERM", "dumb")})
    sys.stdout.write(result.output)
    if args.console or result.returncode in (124, 125):
        sys.stderr.write(result.console)
    sys.stderr.write(f"[guest exit status {result.returncode}; command started after "
                     f"{result.boot_seconds}s; {result.total_seconds:.1f}s in all; accel {result.accel}]\n")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
