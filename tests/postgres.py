"""A throwaway PostgreSQL server for the search's tests: Debian's `postgresql`, a data folder in a
temporary directory, listening on 127.0.0.1 only; `initdb` and `pg_ctl` refuse root, so as root they
run as the `postgres` user."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def server_binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def throwaway_server():
    """Yield the SQLAlchemy URL of a fresh server; it is stopped and its folder removed afterwards."""
    binaries = server_binaries()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    root.chmod(0o777)  # the postgres user writes its data folder, socket and log here
    data, port = root / "data", free_port()
    pg_ctl = [*as_postgres, str(binaries / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*as_postgres, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*pg_ctl, "-o", f"-h 127.0.0.1 -p {port} -k {root}", "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres", pg_ctl
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
