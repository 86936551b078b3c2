"""Reading the files of a routing storage endpoint, the way an Azure user reads what IoT Hub
routed to a storage container: Avro object container files (schema
``Microsoft.Azure.Devices.Message``) read with fastavro, or JSON lines.

Not a test module (no ``test_`` prefix): compat tests import it.

    from routing_storage_files import read_routed_files, body_bytes
    records = read_routed_files(directory)          # every file, every record, in name order
    assert body_bytes(records[0]) == b'{"temp":21}'

Each record is a dict with Azure's keys ``EnqueuedTimeUtc``, ``Properties``,
``SystemProperties`` and ``Body`` as the file holds them (Avro: ``bytes``; JSON: the embedded
JSON value when the message was ``application/json`` in UTF-8, else a base64 string), plus
``_file`` (the path relative to the directory) and ``_encoding`` (``"avro"`` or ``"json"``).
"""

from __future__ import annotations

import base64
import io
import json
import os
from typing import Any

try:  # fastavro is the reader Azure users reach for; see AVRO_READER.
    import fastavro  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    fastavro = None

AVRO_MAGIC = b"Obj\x01"

#: Which Avro reader decodes Avro files: "fastavro", or "builtin" (a minimal reader of the
#: null codec, used only while fastavro is not installed; tests that must prove compatibility
#: with a real Avro reader should check this).
AVRO_READER = "fastavro" if fastavro is not None else "builtin"


def _read_long(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return (value >> 1) ^ -(value & 1), at


def _read_bytes(data: bytes, at: int) -> tuple[bytes, int]:
    length, at = _read_long(data, at)
    return data[at : at + length], at + length


def _read_map(data: bytes, at: int, value) -> tuple[dict, int]:
    out = {}
    while True:
        count, at = _read_long(data, at)
        if count == 0:
            return out, at
        if count < 0:
            count = -count
            _, at = _read_long(data, at)
        for _ in range(count):
            key, at = _read_bytes(data, at)
            out[key.decode("utf-8")], at = value(data, at)


def _builtin_avro(data: bytes) -> list[dict[str, Any]]:
    """Decodes Azure's routed-message Avro files (codec null) without fastavro."""
    at = len(AVRO_MAGIC)
    metadata, at = _read_map(data, at, _read_bytes)
    if metadata.get("avro.codec", b"null") != b"null":
        raise ValueError("only the null codec is supported without fastavro")
    sync, at = data[at : at + 16], at + 16
    string = lambda d, a: (lambda r: (r[0].decode("utf-8"), r[1]))(_read_bytes(d, a))  # noqa: E731
    records = []
    while at < len(data):
        count, at = _read_long(data, at)
        _, at = _read_long(data, at)
        for _ in range(count):
            time, at = string(data, at)
            properties, at = _read_map(data, at, string)
            system, at = _read_map(data, at, string)
            branch, at = _read_long(data, at)
            body = None
            if branch == 1:
                body, at = _read_bytes(data, at)
            records.append(
                {"EnqueuedTimeUtc": time, "Properties": properties, "SystemProperties": system, "Body": body}
            )
        if data[at : at + 16] != sync:
            raise ValueError("bad Avro sync marker")
        at += 16
    return records


def decode_routed_file(data: bytes) -> list[dict[str, Any]]:
    """Decodes one routed file (a file of a directory endpoint or a downloaded blob)."""
    if data.startswith(AVRO_MAGIC):
        if fastavro is not None:
            records = [dict(record) for record in fastavro.reader(io.BytesIO(data))]
        else:
            records = _builtin_avro(data)
        for record in records:
            record["_encoding"] = "avro"
        return records
    records = []
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            record["_encoding"] = "json"
            records.append(record)
    return records


def read_routed_files(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """Reads every routed file under ``directory`` (recursively, in name order; dot files such
    as a crash's leftover temporary files are skipped) and returns all records."""
    root = os.fspath(directory)
    paths = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths.extend(os.path.join(current, name) for name in files if not name.startswith("."))
    records = []
    for path in sorted(paths, key=lambda p: os.path.relpath(p, root)):
        with open(path, "rb") as file:
            for record in decode_routed_file(file.read()):
                record["_file"] = os.path.relpath(path, root).replace(os.sep, "/")
                records.append(record)
    return records


def _declared_json(record: dict[str, Any]) -> bool:
    system = record.get("SystemProperties") or {}
    content_type = str(system.get("contentType", "")).split(";")[0].strip().lower()
    return content_type == "application/json" and str(system.get("contentEncoding", "")).strip().lower() == "utf-8"


def body_bytes(record: dict[str, Any]) -> bytes:
    """Returns a record's message body as bytes, whatever the encoding wrote. An embedded JSON
    body comes back in compact form (``json.dumps`` of the value), not byte for byte."""
    body = record.get("Body")
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if not isinstance(body, str) or not _declared_json(record):
        return compact if not isinstance(body, str) else base64.b64decode(body)
    # Declared JSON with a string Body: base64 when the body did not parse as JSON (written
    # that way), else an embedded JSON string.
    try:
        decoded = base64.b64decode(body, validate=True)
    except ValueError:
        return compact  # not base64: an embedded JSON string
    try:
        json.loads(decoded)
    except ValueError:
        return decoded  # base64 of a body that is not JSON
    return compact  # a JSON body would have been embedded: the string is the value itself
