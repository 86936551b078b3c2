"""Start, stop and talk to a real `outpost` server for the compatibility tests.

The official Python service SDK (azure-iot-hub 2.7.0) talks HTTPS to `https://<HostName>`,
and the device SDKs hard-code their ports, so the hub always listens on 127.0.0.1:443 with
host name `localhost`. Only one server may run at a time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HTTPS_LISTEN = "127.0.0.1:443"
READY_TIMEOUT_S = float(os.environ.get("OUTPOST_READY_TIMEOUT", "60"))
STOP_TIMEOUT_S = 15.0
CLI_TIMEOUT_S = 30.0


class OutpostError(RuntimeError):
    """The server or its CLI did not behave as the harness contract says."""


def outpost_binary() -> Path:
    """Returns the debug `outpost` binary (override with OUTPOST_BIN)."""
    override = os.environ.get("OUTPOST_BIN")
    if override:
        binary = Path(override)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        if not target.is_absolute():
            target = REPO_ROOT / target
        binary = target / "debug" / "outpost"
    if not binary.is_file():
        raise OutpostError(
            f"outpost binary not found at {binary}; run `cargo build -p outpost` in {REPO_ROOT}"
        )
    return binary


def _port_in_use(listen: str) -> bool:
    host, port = listen.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no output file>"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "<empty>"


class OutpostServer:
    """One `outpost serve` process on a data directory; can be stopped and started again."""

    # Set when a start timed out: later starts in the same session fail at once instead of
    # waiting READY_TIMEOUT_S again for every test module.
    earlier_timeout: str | None = None

    def __init__(self, data_dir: Path, log_dir: Path | None = None) -> None:
        self.binary = outpost_binary()
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir) if log_dir else self.data_dir.parent / "logs"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.stdout_path: Path | None = None
        self.stderr_path: Path | None = None
        self.operator_endpoint: str | None = None

    @property
    def ready_file(self) -> Path:
        return self.data_dir / "operator-endpoint"

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def start(self) -> None:
        if OutpostServer.earlier_timeout:
            raise OutpostError(f"not starting again: an earlier start timed out:\n{OutpostServer.earlier_timeout}")
        if self.process is not None and self.process.poll() is None:
            raise OutpostError("server already running")
        if _port_in_use(HTTPS_LISTEN):
            raise OutpostError(
                f"{HTTPS_LISTEN} is already in use: another outpost (or another suite) is running; "
                "the compatibility suites need the port for themselves"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The server removes a stale endpoint file itself; removing it here as well means a
        # file left by the previous run can never be mistaken for readiness.
        self.ready_file.unlink(missing_ok=True)
        self.starts += 1
        self.stdout_path = self.log_dir / f"serve-{self.starts}.stdout"
        self.stderr_path = self.log_dir / f"serve-{self.starts}.stderr"
        cmd = [
            str(self.binary),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--https-listen",
            HTTPS_LISTEN,
            "--operator-listen",
            "127.0.0.1:0",
        ]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self._wait_ready(cmd)

    def _wait_ready(self, cmd: list[str]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise OutpostError(
                    f"`{' '.join(cmd)}` exited with code {code} before it was ready.\n"
                    f"--- stderr (tail) ---\n{_tail(self.stderr_path)}\n"
                    f"--- stdout (tail) ---\n{_tail(self.stdout_path)}"
                )
            if self.ready_file.is_file():
                endpoint = self.ready_file.read_text().strip()
                if endpoint:
                    self.operator_endpoint = endpoint
                    if not _port_in_use(HTTPS_LISTEN):
                        self._kill()
                        raise OutpostError(
                            f"{self.ready_file} was written but nothing accepts connections on "
                            f"{HTTPS_LISTEN}: the server must bind every listener first.\n"
                            f"--- stderr (tail) ---\n{_tail(self.stderr_path)}"
                        )
                    return
            time.sleep(0.05)
        self._kill()
        message = (
            f"`{' '.join(cmd)}` did not write {self.ready_file} within {READY_TIMEOUT_S:.0f}s.\n"
            f"--- stderr (tail) ---\n{_tail(self.stderr_path)}\n"
            f"--- stdout (tail) ---\n{_tail(self.stdout_path)}"
        )
        OutpostServer.earlier_timeout = message
        raise OutpostError(message)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._kill()
        code = self.process.returncode
        self.process = None
        return code

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def stderr_tail(self, lines: int = 40) -> str:
        return _tail(self.stderr_path, lines) if self.stderr_path else "<not started>"

    # ---- the admin CLI -------------------------------------------------------------------

    def cli(self, *args: str) -> str:
        cmd = [str(self.binary), *args]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            raise OutpostError(f"`{' '.join(cmd)}` timed out after {CLI_TIMEOUT_S:.0f}s") from exc
        if done.returncode != 0:
            raise OutpostError(
                f"`{' '.join(cmd)}` exited with {done.returncode}\n"
                f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}\n"
                f"--- server stderr (tail) ---\n{self.stderr_tail(20)}"
            )
        return done.stdout

    def connection_string(self, policy: str | None = None, hub: str | None = None) -> str:
        args = ["hub", "connection-string", "--data-dir", str(self.data_dir)]
        if hub:
            args += ["--hub", hub]
        if policy:
            args += ["--policy", policy]
        out = self.cli(*args)
        lines = [line for line in out.splitlines() if line.strip()]
        if len(lines) != 1:
            raise OutpostError(
                f"`outpost {' '.join(args)}` must print exactly one line, printed {out!r}"
            )
        return lines[0].strip()

    def hub_create(self, name: str, host_name: str | None = None) -> str:
        args = ["hub", "create", name, "--data-dir", str(self.data_dir)]
        if host_name:
            args += ["--host-name", host_name]
        return self.cli(*args)

    def hub_list(self):
        out = self.cli("hub", "list", "--data-dir", str(self.data_dir), "--output", "json")
        try:
            return json.loads(out)
        except json.JSONDecodeError as exc:
            raise OutpostError(f"`outpost hub list --output json` printed invalid JSON: {out!r}") from exc


def parse_connection_string(cs: str) -> dict[str, str]:
    parts = {}
    for segment in cs.split(";"):
        if not segment:
            continue
        key, _, value = segment.partition("=")
        parts[key] = value
    return parts


@contextmanager
def ca_bundle(ca_path):
    """Makes `requests` (used by msrest inside the Python service SDK) trust Outpost's dev CA."""
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca_path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous
