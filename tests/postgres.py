"""A PostgreSQL server of the tests' own, from Debian's `postgresql` package (scripts/bootstrap.sh --test): a fresh
cluster in a temporary directory, on a free port, never the machine's own. PostgreSQL refuses to run as root, so as
root it runs as the `postgres` user the package creates. Tuned for tests, not durability (fsync off)."""

import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from services.launcher.nats_server import free_port

SUPERUSER = "wf"  # the cluster's own superuser (initdb -U); every role is trusted on loopback and the socket
DATABASE = "wf"
NOT_DURABLE = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
START_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.02
PR_SET_PDEATHSIG = 1  # linux/prctl.h
DIRECTORY_PREFIX = "wf-test-postgres-"  # then the pid of the tests' process


def postgres_bin_dir() -> Path:
    """initdb's directory: from PATH, else the newest /usr/lib/postgresql/<version>/bin (Debian keeps it off PATH)."""
    if on_path := shutil.which("initdb"):
        return Path(on_path).resolve().parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda initdb: int(initdb.parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL not found: install Debian's postgresql (scripts/bootstrap.sh --test)")
    return found[-1].parent


class PostgresServer:
    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.port = free_port()
        _remove_those_left_by_killed_runs()
        # Not under pytest's temporary directories: the postgres user cannot enter those (root's, mode 0700).
        self.dir = Path(tempfile.mkdtemp(prefix=f"{DIRECTORY_PREFIX}{os.getpid()}-"))
        self.data = self.dir / "data"
        self.process: subprocess.Popen | None = None
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)

    def url(self, role: str = SUPERUSER) -> str:
        return f"postgresql+asyncpg://{role}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> "PostgresServer":
        self._run(
            "initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"
        )
        # A child of ours (through runuser, which waits for it), so its exit is collected here.
        with open(self.dir / "postgres.log", "ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.as_user,
                    self.bin_dir / "postgres",
                    "-D",
                    self.data,
                    "-p",
                    str(self.port),
                    "-k",
                    self.dir,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    *NOT_DURABLE,
                ],
                cwd=self.dir,
                stdout=log,
                stderr=log,
                start_new_session=True,  # (a Ctrl-C reaches pytest only, which then stops the server)
                preexec_fn=_terminated_with_its_parent,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while subprocess.run([self.bin_dir / "pg_isready", "-q", "-h", self.dir, "-p", str(self.port)]).returncode:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {self.log()}")
            time.sleep(POLL_INTERVAL_S)
        self.sql(f"CREATE DATABASE {DATABASE}", database="postgres")
        return self

    def stop(self) -> None:
        """Stop the server if it runs (also after a start that failed midway), and remove its directory."""
        try:
            if self.process is None:
                return
            if self.process.poll() is None:
                try:
                    self._run("pg_ctl", "stop", "--wait", "-D", self.data, "--mode=fast")
                except RuntimeError:  # (no pid file yet, say) runuser passes a SIGTERM on, then kills
                    self.process.terminate()
            self.process.wait(timeout=START_TIMEOUT_S)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "postgres.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def create_schema(self) -> str:
        """A new, empty place of a test's own, cheaper than a database (~40 ms, not ~300): a role and its schema of
        the same name, which the role's default search_path ("$user", public) finds first, so whatever it creates
        lands there; it may not create in public (PostgreSQL 15). The URL as that role: url(name)."""
        name = f"t{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE ROLE {name} LOGIN; CREATE SCHEMA {name} AUTHORIZATION {name}")
        return name

    def drop_schema(self, name: str) -> None:
        self.sql(f"DROP SCHEMA {name} CASCADE; DROP ROLE {name}")

    def sql(self, statement: str, database: str = DATABASE) -> None:
        """Run statements as the superuser (psql: a client, run as whoever runs the tests, over the socket)."""
        self._run(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.dir,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-c",
            statement,
            as_user=False,
        )

    def _run(self, tool: str, *arguments: object, as_user: bool = True) -> None:
        command = [*(self.as_user if as_user else []), str(self.bin_dir / tool), *map(str, arguments)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}\n{self.log()}")


def _terminated_with_its_parent() -> None:
    """A pytest killed before it could stop the server (SIGTERM, SIGKILL) takes it along: the child gets a SIGTERM
    (runuser passes it on; postgres shuts down, its clients being gone)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _remove_those_left_by_killed_runs() -> None:
    """The directories of servers whose tests' process was killed (their server went with it): ~40 MB each."""
    for directory in Path(tempfile.gettempdir()).glob(f"{DIRECTORY_PREFIX}*"):
        pid = directory.name.removeprefix(DIRECTORY_PREFIX).split("-")[0]
        if pid.isdigit() and not Path("/proc", pid).exists():
            shutil.rmtree(directory, ignore_errors=True)
