"""Real database servers for the tests: MariaDB (mariadbd) and PostgreSQL 15.

Each launcher creates a fresh data directory, a database ``saruhealth`` with a table ``health``
(``web1``/``enabled`` and ``web2``/``disabled``) and a user with a password (password, not trust,
authentication over TCP, so that wrong credentials fail), listens on 127.0.0.1 only, and returns a
handle whose ``stop()`` ends the server (idempotent) and ``start()`` starts it again on the same
port and data. ``close()`` stops it and removes what it created outside the test's directory.

PostgreSQL refuses to run as root: when the tests run as root, initdb and postgres run as the
``postgres`` system user, on a data directory made under /tmp (pytest's own temporary directories
are private to root) and removed by ``close()``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port, require

DB_NAME = "saruhealth"
DB_USER = "saru"
DB_PASSWORD = "s3cret-pw"
#: a health query returning exactly one row ("enabled")
QUERY_ONE_ROW = "SELECT status FROM health WHERE name = 'web1'"
#: a health query returning no row
QUERY_NO_ROW = "SELECT status FROM health WHERE name = 'nobody'"

PG_BIN = Path("/usr/lib/postgresql/15/bin")

_HEALTH_ROWS = "('web1', 'enabled'), ('web2', 'disabled')"


@dataclass
class Database:
    """A database server process on 127.0.0.1:port; ``argv`` starts it, ``ready`` marks its log."""

    kind: str  # "mariadb" | "postgresql"
    host: str
    port: int
    directory: Path
    argv: list[str]
    ready: str
    user: str | None = None  # run as this system user (PostgreSQL as root)
    stop_signal: int = signal.SIGTERM
    cleanup: list[Path] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.directory / f"{self.kind}.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (unless running) and wait for its "ready" line (a new one, if restarted)."""
        if self.process is not None and self.process.poll() is None:
            return
        seen = self.log_text().count(self.ready)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                user=self.user, group=self.user, extra_groups=[] if self.user else None,
            )
        deadline = time.monotonic() + timeout
        while self.log_text().count(self.ready) <= seen:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)


def _run(argv: list[str], user: str | None = None, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin.encode() if stdin else None, capture_output=True,
                          user=user, group=user, extra_groups=[] if user else None)
    if done.returncode:
        out = (done.stdout + done.stderr).decode(errors="replace")
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{out[-3000:]}")


# --------------------------------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------------------------------

MARIADB_INIT = f"""\
CREATE DATABASE IF NOT EXISTS {DB_NAME};
CREATE TABLE IF NOT EXISTS {DB_NAME}.health (name VARCHAR(32) PRIMARY KEY, status VARCHAR(32));
INSERT IGNORE INTO {DB_NAME}.health VALUES {_HEALTH_ROWS};
CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';
CREATE USER IF NOT EXISTS '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';
GRANT SELECT ON *.* TO '{DB_USER}'@'127.0.0.1';
GRANT SELECT ON *.* TO '{DB_USER}'@'localhost';
"""


def start_mariadb(directory: Path) -> Database:
    """A MariaDB server with the ``saruhealth`` database and user ``saru`` (password auth)."""
    for command in ("mariadb-install-db", "mariadbd"):
        require(shutil.which(command) is not None or Path(f"/usr/sbin/{command}").exists(),
                f"{command} is not installed (Debian package mariadb-server)")
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    as_root = os.geteuid() == 0
    user = ["--user=root"] if as_root else []
    _run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", *user,
          "--auth-root-authentication-method=socket", "--skip-test-db", "--skip-name-resolve"])
    (directory / "init.sql").write_text(MARIADB_INIT)
    port = free_port()
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    server = Database(
        "mariadb", "127.0.0.1", port, directory,
        [mariadbd, "--no-defaults", f"--datadir={data}", f"--socket={directory / 'mysqld.sock'}",
         f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={directory / 'mysqld.pid'}",
         f"--init-file={directory / 'init.sql'}", "--skip-log-bin", "--skip-name-resolve",
         "--innodb-buffer-pool-size=16M", *user],
        ready="ready for connections",
    )
    server.start()
    return server


# --------------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------------


def start_postgresql(directory: Path) -> Database:
    """A PostgreSQL 15 server with the ``saruhealth`` database owned by user ``saru`` (scram auth)."""
    require((PG_BIN / "postgres").exists(), "PostgreSQL 15 is not installed (Debian package postgresql)")
    directory.mkdir(parents=True, exist_ok=True)
    user: str | None = None
    home = directory
    cleanup: list[Path] = []
    if os.geteuid() == 0:
        require(_has_user("postgres"), "no postgres system user")
        user = "postgres"
        home = Path(tempfile.mkdtemp(prefix="saru-pg-"))
        cleanup.append(home)
        shutil.chown(home, "postgres", "postgres")
    try:
        pwfile = home / "superuser.pw"
        pwfile.write_text("superuser-pw\n")
        if user:
            shutil.chown(pwfile, user, user)
        data = home / "data"
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
              "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync",
              "--no-instructions"], user=user)
        port = free_port()
        server = Database(
            "postgresql", "127.0.0.1", port, directory,
            [str(PG_BIN / "postgres"), "-D", str(data), "-k", str(home), "-h", "127.0.0.1",
             "-p", str(port), "-c", "fsync=off", "-c", "max_connections=50"],
            ready="database system is ready to accept connections",
            user=user, stop_signal=signal.SIGINT, cleanup=cleanup,  # SIGINT: fast shutdown
        )
        server.start()
    except BaseException:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        psql = [str(PG_BIN / "psql"), "-X", "-q", "-h", str(home), "-p", str(port), "-v", "ON_ERROR_STOP=1"]
        _run([*psql, "-U", "postgres", "-d", "postgres",
              "-c", f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'",
              "-c", f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}"], user=user)
        _run([*psql, "-U", DB_USER, "-d", DB_NAME,
              "-c", "CREATE TABLE health (name text PRIMARY KEY, status text)",
              "-c", f"INSERT INTO health VALUES {_HEALTH_ROWS}"], user=user)
    except BaseException:
        server.close()
        raise
    return server


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
