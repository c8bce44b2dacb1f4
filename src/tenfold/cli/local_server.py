"""Running a throwaway ``tenfold serve`` as a child process (used by ``tenfold demo``).

Owns: starting the server with its own ``TENFOLD_HOME``, waiting for ``GET /health``, reading the admin
key it writes, and stopping it (SIGTERM, then SIGKILL) — also on errors and Ctrl-C. Output goes to
``<home>/server.log``. Does not own: the server itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from tenfold.cli.output import CliError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class LocalServer:
    """``with LocalServer(home, port) as srv:`` → ``srv.base_url``, ``srv.admin_key``."""

    def __init__(self, home: Path, port: int | None = None, ready_timeout: float = 900.0) -> None:
        self.home = home.expanduser().resolve()
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.health: dict[str, object] = {}

    def __enter__(self) -> LocalServer:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if port_in_use(self.port):
            raise CliError(f"port {self.port} is already in use; pass --port N or --base-url URL")
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "TENFOLD_HOME": str(self.home)}
        cmd = [sys.executable, "-m", "tenfold.cli.main", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        # Own session: a terminal Ctrl-C reaches only us, and we stop the server in order.
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise CliError(f"the server exited with code {self.proc.returncode}: {self.log_tail()}")
            try:
                response = httpx.get(self.base_url + "/health", timeout=2.0)
                if response.status_code == 200 and response.json().get("status") == "ok":
                    self.health = response.json()
                    return
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.5)
        raise CliError(f"the server did not answer /health within {self.ready_timeout:.0f}s; see {self.log_path}")

    @property
    def admin_key(self) -> str:
        path = self.home / "admin_key"
        for _ in range(20):  # written on first start; allow a moment after /health answers
            if path.is_file() and path.read_text().strip():
                return path.read_text().strip()
            time.sleep(0.25)
        raise CliError(f"no admin key at {path}; the server should write it on first start")

    def log_tail(self, lines: int = 5) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return f"(no log at {self.log_path})"
        return " | ".join(tail) or f"(empty log at {self.log_path})"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
