"""Helpers shared by the Python compatibility tests: recorded SDK clients and small assertions."""

from __future__ import annotations

import base64
import os
import uuid

from azure.iot.hub import IoTHubRegistryManager

# ---- HTTP exchange recorder -----------------------------------------------------------------

EXCHANGES: list[str] = []
_INTERESTING_HEADERS = ("authorization", "if-match", "content-type", "etag", "www-authenticate")


def _fmt_headers(headers) -> str:
    lines = []
    for name, value in headers.items():
        if name.lower() in _INTERESTING_HEADERS:
            if name.lower() == "authorization" and len(value) > 70:
                value = value[:70] + "..."
            lines.append(f"    {name}: {value}")
    return "\n".join(lines)


def _body_text(body) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    return body if len(body) <= 2000 else body[:2000] + "...(truncated)"


def record_exchange(response, *args, **kwargs):
    """A `requests` response hook: remembers request and response for failure reports."""
    req = response.request
    EXCHANGES.append(
        f"> {req.method} {req.url}\n{_fmt_headers(req.headers)}\n    body: {_body_text(req.body)}\n"
        f"< {response.status_code} {response.reason}\n{_fmt_headers(response.headers)}\n"
        f"    body: {_body_text(response.content)}"
    )
    return response


def registry_for(connection_string: str) -> IoTHubRegistryManager:
    """An official-SDK IoTHubRegistryManager whose HTTP exchanges are recorded."""
    registry = IoTHubRegistryManager.from_connection_string(connection_string)
    registry.protocol.config.hooks.append(record_exchange)
    # msrest waits 100 s by default; a hung server should fail a test quickly instead.
    registry.protocol.config.connection.timeout = 20
    return registry


# Figures a test wants printed at the end of the run ("crash test: sent …, acked …, found …").
FIGURES: list[str] = []


# ---- small helpers ---------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def assert_generated_key(key) -> None:
    assert isinstance(key, str) and key, f"expected a generated key, got {key!r}"
    raw = base64.b64decode(key, validate=True)
    assert len(raw) >= 16, f"generated key {key!r} decodes to only {len(raw)} bytes"


def status_of(exc) -> int:
    """HTTP status of an msrest HttpOperationError."""
    return exc.response.status_code


def describe(exc) -> str:
    try:
        return f"HTTP {exc.response.status_code}: {exc.response.text}"
    except Exception:  # noqa: BLE001 - diagnostics only
        return repr(exc)


def user_props(props: dict | None) -> dict:
    """Twin properties without the `$version` / `$metadata` bookkeeping."""
    return {k: v for k, v in (props or {}).items() if not k.startswith("$")}
