"""A throwaway PostgreSQL server on 127.0.0.1 for tests and the soak: ``initdb`` into a temp folder
(as ``nobody`` when run as root: initdb refuses root), password auth (scram-sha-256), a free port.
:meth:`PostgresServer.stop` / :meth:`PostgresServer.start` take it down and bring it back on the same
port with the same data (a database outage); :meth:`PostgresServer.destroy` removes it.

Needs the PostgreSQL server binaries (Debian: ``postgresql-15``; or set ``PG_BIN``).
"""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PASSWORD = "pricing-test-pw"


def available() -> bool:
    """True when the server binaries are installed."""
    return (PG_BIN / "initdb").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``initdb`` + ``createdb dagster`` at construction; the server runs until :meth:`stop`.

    Attributes:
        conn: ``dict(host, port, username, password, db_name)``.
        env: the ``DAGSTER_PG_*`` variables ``infra/dagster-postgres.yaml`` reads.
    """

    def __init__(self):
        self._prefix = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        self.work = Path(tempfile.mkdtemp(prefix="pricing-pg-"))
        (self.work / "pw").write_text(PASSWORD + "\n")
        if self._prefix:
            for p in (self.work, self.work / "pw"):
                shutil.chown(p, user="nobody")
        self.data, self.port = self.work / "data", _free_port()
        subprocess.run(
            [
                *self._prefix,
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "dagster",
                f"--pwfile={self.work / 'pw'}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.start()
        subprocess.run(
            [
                *self._prefix,
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "dagster",
                "dagster",
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PGPASSWORD": PASSWORD},
            timeout=60,
        )
        self.conn = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": "dagster",
            "password": PASSWORD,
            "db_name": "dagster",
        }
        self.env = {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": "dagster",
            "DAGSTER_PG_PASSWORD": PASSWORD,
            "DAGSTER_PG_DB": "dagster",
        }

    def start(self) -> None:
        """Start (or restart after :meth:`stop`) the server; waits until it accepts connections.

        Raises:
            RuntimeError: ``pg_ctl start`` failed (its log's tail in the message).
        """
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.work} -c fsync=off -c max_connections=100"
        res = subprocess.run(
            [
                *self._prefix,
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.work / "pg.log"),
                "-w",
                "-t",
                "60",
                "-o",
                opts,
                "start",
            ],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            log = (self.work / "pg.log").read_text() if (self.work / "pg.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {res.stderr}\n{log[-2000:]}")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: connections cut at once, as a crash or a network loss)."""
        subprocess.run(
            [*self._prefix, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            capture_output=True,
            timeout=60,
        )

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)
