"""Start, stop and talk to a real `outpost` server for the compatibility tests.

The official Python service SDK (azure-iot-hub 2.7.0) talks HTTPS to `https://<HostName>`,
and the device SDKs hard-code their ports (the Python device SDK connects MQTT to 8883 and checks
the host name), so the hub always listens on 127.0.0.1:443 (HTTPS), 127.0.0.1:8883 (MQTT over
TLS) and 127.0.0.1:5671 (AMQP over TLS: the Event Hubs endpoint) with host name `localhost`. Only
one server may run at a time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HTTPS_LISTEN = "127.0.0.1:443"
MQTT_LISTEN = "127.0.0.1:8883"
AMQP_LISTEN = "127.0.0.1:5671"
# The plain AMQP listener, for Event Hubs clients with `UseDevelopmentEmulator=true` (wire reference §7.5).
AMQP_PLAIN_LISTEN = "127.0.0.1:5672"
LISTENERS = (HTTPS_LISTEN, MQTT_LISTEN, AMQP_LISTEN, AMQP_PLAIN_LISTEN)
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

    def __init__(self, data_dir: Path, log_dir: Path | None = None, config_text: str | None = None) -> None:
        self.binary = outpost_binary()
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir) if log_dir else self.data_dir.parent / "logs"
        # Optional TOML for `serve --config` (e.g. `[file_upload.external]`); the listener flags
        # and --data-dir below still override it. None: no file, as before.
        self.config_text = config_text
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
        for listen in LISTENERS:
            if _port_in_use(listen):
                raise OutpostError(
                    f"{listen} is already in use: another outpost (or another suite, or an MQTT "
                    "broker) is running; the compatibility suites need the port for themselves"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The server removes a stale endpoint file itself; removing it here as well means a
        # file left by the previous run can never be mistaken for readiness.
        self.ready_file.unlink(missing_ok=True)
        self.starts += 1
        self.stdout_path = self.log_dir / f"serve-{self.starts}.stdout"
        self.stderr_path = self.log_dir / f"serve-{self.starts}.stderr"
        config_args: list[str] = []
        if self.config_text is not None:
            config_path = self.data_dir.parent / "outpost.toml"
            config_path.write_text(self.config_text)
            config_args = ["--config", str(config_path)]
        cmd = [
            str(self.binary),
            *config_args,
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--https-listen",
            HTTPS_LISTEN,
            "--mqtt-listen",
            MQTT_LISTEN,
            "--amqp-listen",
            AMQP_LISTEN,
            "--amqp-plain-listen",
            AMQP_PLAIN_LISTEN,
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
                    for listen in LISTENERS:
                        if not _port_in_use(listen):
                            self._kill()
                            raise OutpostError(
                                f"{self.ready_file} was written but nothing accepts connections on "
                                f"{listen}: the server must bind every listener first.\n"
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

    def crash(self) -> int | None:
        """SIGKILL (no chance to flush or clean up), as a power cut would. Returns the exit code."""
        if self.process is None:
            return None
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

    # ---- the operator API ----------------------------------------------------------------

    @property
    def operator_token(self) -> str:
        return (self.data_dir / "operator-token").read_text().strip()

    def operator_get(self, path: str, params: dict | None = None, timeout: float = 40.0):
        """GET on the operator API (bearer token from DATA_DIR/operator-token); returns the JSON."""
        if not self.operator_endpoint:
            raise OutpostError("the server is not running (no operator endpoint)")
        url = self.operator_endpoint.rstrip("/") + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.operator_token}"})
        # No proxies: the operator API is on loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise OutpostError(f"GET {url} -> {exc.code}: {exc.read()[:500]!r}") from exc

    def operator_request(self, method: str, path: str, body=None, timeout: float = 40.0):
        """Any verb on the operator API with a JSON body; returns (status, parsed JSON or text or
        None). Unlike `operator_get` it does not raise on an error status: tests check it."""
        if not self.operator_endpoint:
            raise OutpostError("the server is not running (no operator endpoint)")
        url = self.operator_endpoint.rstrip("/") + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        if not raw:
            return status, None
        try:
            return status, json.loads(raw)
        except json.JSONDecodeError:
            return status, raw.decode(errors="replace")

    def partitions(self, hub: str = "localhost") -> list[dict]:
        """`GET /hubs/{hub}/partitions`."""
        return self.operator_get(f"/hubs/{urllib.parse.quote(hub)}/partitions")

    def read_events(
        self, hub: str, partition: str, from_sequence_number: int, max_events: int = 1000, wait_ms: int = 0
    ) -> list[dict]:
        """`GET /hubs/{hub}/events?partition=…&fromSequenceNumber=…&max=…&waitMs=…`."""
        return self.operator_get(
            f"/hubs/{urllib.parse.quote(hub)}/events",
            {"partition": partition, "fromSequenceNumber": from_sequence_number,
             "max": max_events, "waitMs": wait_ms},
            timeout=wait_ms / 1000 + 30,
        )

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

    def monitor_events(self, device_id: str | None = None, timeout_s: float = 2, hub: str | None = None) -> list[dict]:
        """`outpost monitor-events --from-beginning --output json`: one JSON event per line."""
        args = ["monitor-events", "--data-dir", str(self.data_dir), "--from-beginning",
                "--timeout", str(timeout_s), "--output", "json"]
        if hub:
            args += ["--hub", hub]
        if device_id:
            args += ["--device-id", device_id]
        out = self.cli(*args)
        events = []
        for line in out.splitlines():
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise OutpostError(f"`outpost {' '.join(args)}` printed a non-JSON line: {line!r}") from exc
        return events

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
