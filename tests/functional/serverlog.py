"""What the PostgreSQL server says it received: the statements of one database, read from
the server's own log, whoever sent them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


class ServerLog:
    """The statements PostgreSQL logs for one database (`log_statement = 'all'` set for
    it, so sessions opened from now on log), read from the server's log file."""

    def __init__(self, dbname: str) -> None:
        from tests.conftest import _admin_or_skip

        self.dbname = dbname
        self._admin = _admin_or_skip()
        with self._admin.cursor() as cur:
            cur.execute(f"ALTER DATABASE \"{self.dbname}\" SET log_statement = 'all'")
            cur.execute("SELECT pg_backend_pid()")
            # The server runs on this machine: its backends write the log on stderr.
            self.path = Path(os.readlink(f"/proc/{cur.fetchone()[0]}/fd/2"))
        self.offset = self.path.stat().st_size

    def close(self) -> None:
        with self._admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{self.dbname}" RESET log_statement')
        self._admin.close()

    def mark(self) -> None:
        """Count from here on."""
        self.offset = self.path.stat().st_size

    def statements(self, exclude_application: str | None = None) -> list[str]:
        """Statements logged since `mark` in this database, but those of the sessions of
        `exclude_application` (still connected)."""
        excluded: set[str] = set()
        if exclude_application:
            with self._admin.cursor() as cur:
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                    (self.dbname, exclude_application),
                )
                excluded = {str(row[0]) for row in cur.fetchall()}
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        found = []
        for line in text.splitlines():
            # Debian's log_line_prefix: '%m [%p] %q%u@%d '
            if f"@{self.dbname} " not in line or "LOG:  statement: " not in line:
                continue
            pid = line.split("[", 1)[1].split("]", 1)[0]
            if pid not in excluded:
                found.append(line.split("LOG:  statement: ", 1)[1])
        return found


@contextlib.contextmanager
def server_log(dbname: str) -> Iterator[ServerLog]:
    log = ServerLog(dbname)
    try:
        yield log
    finally:
        log.close()
