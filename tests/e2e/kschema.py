"""Kafka requests and responses encoded and decoded from Apache Kafka's own message schemas.

The schemas (`common/message/*.json`) are read from the kafka-clients jar of the Kafka the suite runs
(KAFKA_LIBS); nothing of them is copied here. A message is a dict keyed by the schema's field names
(`{"Topics": [{"Name": "t", ...}]}`); a field left out of a request takes its schema default. Decoded
responses carry every field the version has, tagged fields included (unknown tags under `_unknown_tags`).

    api = Schemas.load().api("CreateTopics")
    req = api.encode_request(version=7, correlation_id=1, body={"Topics": [...], "TimeoutMs": 5000})
    resp = api.decode_response(version=7, frame)   # frame: the bytes after the size prefix
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import uuid
import zipfile
from functools import lru_cache
from pathlib import Path

CACHE = Path(os.environ.get("FJORD_E2E_CACHE", Path.home() / ".cache" / "fjord-e2e"))
KAFKA_LIBS = Path(os.environ.get("KAFKA_LIBS", CACHE / "kafka-4.3.1" / "libs"))

_INTS = {"int8": ">b", "int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "int64": ">q", "float64": ">d"}


class Versions:
    """A schema version range: "0+", "3-5", "7" or "none"."""

    def __init__(self, text: str | None):
        text = (text or "none").strip()
        if text == "none":
            self.lo, self.hi = 1, 0
        elif text.endswith("+"):
            self.lo, self.hi = int(text[:-1]), 1 << 15
        elif "-" in text:
            lo, hi = text.split("-")
            self.lo, self.hi = int(lo), int(hi)
        else:
            self.lo = self.hi = int(text)

    def __contains__(self, v: int) -> bool:
        return self.lo <= v <= self.hi


def _strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"^\s*//.*$", "", line) for line in text.splitlines())


class Field:
    def __init__(self, spec: dict, structs: dict[str, list]):
        self.name = spec["name"]
        self.type = spec["type"]
        self.versions = Versions(spec.get("versions"))
        self.nullable = Versions(spec.get("nullableVersions"))
        self.tagged = Versions(spec.get("taggedVersions")) if "tag" in spec else Versions("none")
        self.tag = spec.get("tag")
        self.default = spec.get("default")
        self.is_array = self.type.startswith("[]")
        self.elem = self.type[2:] if self.is_array else self.type
        sub = spec.get("fields")
        if sub is None and self.elem in structs:
            sub = structs[self.elem]
        self.fields = [Field(f, structs) for f in sub] if sub is not None else None

    def default_value(self, version: int):
        if self.is_array:
            return None if (self.default == "null" and version in self.nullable) else []
        if self.fields is not None:
            return None if version in self.nullable else {}
        d = self.default
        if self.elem == "string":
            return None if d == "null" else (d if d is not None else "")
        if self.elem in ("bytes", "records"):
            return None if d == "null" else b""
        if self.elem == "bool":
            return str(d).lower() == "true" if d is not None else False
        if self.elem == "uuid":
            return uuid.UUID(int=0)
        if self.elem == "float64":
            return float(d) if d is not None else 0.0
        if d is None:
            return 0
        if isinstance(d, str):
            return int(d, 0)
        return int(d)


class Writer:
    def __init__(self, flexible: bool):
        self.flexible = flexible
        self.buf = bytearray()

    def uvarint(self, v: int):
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                self.buf.append(b | 0x80)
            else:
                self.buf.append(b)
                return

    def length(self, n: int | None):
        """A length prefix: -1 for null."""
        if self.flexible:
            self.uvarint(0 if n is None else n + 1)
        else:
            self.buf += struct.pack(">i", -1 if n is None else n)


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"short read: want {n} at {self.pos} of {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def uvarint(self) -> int:
        shift = out = 0
        while True:
            b = self.take(1)[0]
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def remaining(self) -> int:
        return len(self.data) - self.pos


def _write_value(w: Writer, f: Field, version: int, value):
    if f.is_array:
        if value is None:
            w.length(None)
            return
        w.length(len(value))
        for item in value:
            _write_elem(w, f, version, item)
        return
    _write_elem(w, f, version, value)


def _write_elem(w: Writer, f: Field, version: int, value):
    t = f.elem
    if f.fields is not None:
        if not f.is_array and version in f.nullable:
            if value is None:
                w.buf += struct.pack(">b", -1)
                return
            w.buf += struct.pack(">b", 1)
        _write_struct(w, f.fields, version, value or {})
    elif t in _INTS:
        w.buf += struct.pack(_INTS[t], value)
    elif t == "bool":
        w.buf += struct.pack(">?", bool(value))
    elif t == "uuid":
        w.buf += (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).bytes
    elif t == "string":
        if value is None:
            if w.flexible:
                w.uvarint(0)
            else:
                w.buf += struct.pack(">h", -1)
            return
        b = value.encode()
        if w.flexible:
            w.uvarint(len(b) + 1)
        else:
            w.buf += struct.pack(">h", len(b))
        w.buf += b
    elif t in ("bytes", "records"):
        if value is None:
            w.length(None)
            return
        w.length(len(value))
        w.buf += value
    else:
        raise ValueError(f"unknown type {t}")


def _write_struct(w: Writer, fields: list[Field], version: int, body: dict):
    tagged = []
    for f in fields:
        if version not in f.versions:
            continue
        value = body.get(f.name, f.default_value(version))
        if w.flexible and version in f.tagged:
            if f.name in body:
                tagged.append((f.tag, f, value))
            continue
        _write_value(w, f, version, value)
    if w.flexible:
        w.uvarint(len(tagged))
        for tag, f, value in sorted(tagged, key=lambda x: x[0]):
            inner = Writer(True)
            _write_value(inner, f, version, value)
            w.uvarint(tag)
            w.uvarint(len(inner.buf))
            w.buf += inner.buf


def _read_value(r: Reader, f: Field, version: int, flexible: bool):
    if f.is_array:
        n = r.uvarint() - 1 if flexible else r.unpack(">i")
        if n < 0:
            return None
        if n > r.remaining():
            raise ValueError(f"{f.name}: array of {n} with {r.remaining()} bytes left")
        return [_read_elem(r, f, version, flexible) for _ in range(n)]
    return _read_elem(r, f, version, flexible)


def _read_elem(r: Reader, f: Field, version: int, flexible: bool):
    t = f.elem
    if f.fields is not None:
        if not f.is_array and version in f.nullable:
            if r.unpack(">b") < 0:
                return None
        return _read_struct(r, f.fields, version, flexible)
    if t in _INTS:
        return r.unpack(_INTS[t])
    if t == "bool":
        return r.unpack(">?")
    if t == "uuid":
        return uuid.UUID(bytes=r.take(16))
    if t == "string":
        n = r.uvarint() - 1 if flexible else r.unpack(">h")
        return None if n < 0 else r.take(n).decode()
    if t in ("bytes", "records"):
        n = r.uvarint() - 1 if flexible else r.unpack(">i")
        return None if n < 0 else r.take(n)
    raise ValueError(f"unknown type {t}")


def _read_struct(r: Reader, fields: list[Field], version: int, flexible: bool) -> dict:
    out: dict = {}
    by_tag = {}
    for f in fields:
        if version not in f.versions:
            continue
        if flexible and version in f.tagged:
            by_tag[f.tag] = f
            out[f.name] = f.default_value(version)
            continue
        out[f.name] = _read_value(r, f, version, flexible)
    if flexible:
        for _ in range(r.uvarint()):
            tag, size = r.uvarint(), r.uvarint()
            raw = r.take(size)
            if tag in by_tag:
                f = by_tag[tag]
                out[f.name] = _read_value(Reader(raw), f, version, True)
            else:
                out.setdefault("_unknown_tags", {})[tag] = raw.hex()
    return out


class Message:
    def __init__(self, spec: dict):
        structs = {s["name"]: s["fields"] for s in spec.get("commonStructs", [])}
        self.name = spec["name"]
        self.api_key = spec.get("apiKey")
        self.valid = Versions(spec["validVersions"])
        self.flexible = Versions(spec.get("flexibleVersions"))
        self.fields = [Field(f, structs) for f in spec.get("fields", [])]

    def encode(self, version: int, body: dict) -> bytes:
        w = Writer(version in self.flexible)
        _write_struct(w, self.fields, version, body)
        return bytes(w.buf)

    def decode(self, version: int, data: bytes, pos: int = 0) -> tuple[dict, int]:
        r = Reader(data, pos)
        out = _read_struct(r, self.fields, version, version in self.flexible)
        return out, r.pos


class Api:
    def __init__(self, request: Message, response: Message):
        self.request = request
        self.response = response
        self.key = request.api_key
        self.name = request.name.removesuffix("Request")

    def encode_request(self, version: int, correlation_id: int, body: dict, client_id: str | None = "parity") -> bytes:
        """A whole frame: size, request header (v1, or v2 for flexible versions), body."""
        flexible = version in self.request.flexible
        h = struct.pack(">hhi", self.key, version, correlation_id)
        if client_id is None:
            h += struct.pack(">h", -1)
        else:
            h += struct.pack(">h", len(client_id.encode())) + client_id.encode()
        if flexible:
            h += b"\x00"
        payload = h + self.request.encode(version, body)
        return struct.pack(">i", len(payload)) + payload

    def decode_response(self, version: int, frame: bytes) -> tuple[int, dict]:
        """(correlation id, body) of a response frame (without its size prefix). ApiVersions always has
        response header v0; other flexible responses header v1. Trailing bytes are an error."""
        r = Reader(frame)
        correlation_id = r.unpack(">i")
        if version in self.response.flexible and self.key != 18:
            for _ in range(r.uvarint()):
                r.uvarint()
                r.take(r.uvarint())
        body, end = self.response.decode(version, frame, r.pos)
        if end != len(frame):
            raise ValueError(f"{self.name} v{version}: {len(frame) - end} bytes left after the response")
        return correlation_id, body


class Schemas:
    def __init__(self, messages: dict[str, Message]):
        self.messages = messages

    @staticmethod
    @lru_cache(maxsize=1)
    def load(libs: Path = KAFKA_LIBS) -> "Schemas":
        jars = sorted(libs.glob("kafka-clients-*.jar"))
        if not jars:
            raise FileNotFoundError(f"no kafka-clients jar in {libs} (run scripts/kafka.sh fetch)")
        messages = {}
        with zipfile.ZipFile(jars[-1]) as z:
            for n in z.namelist():
                if n.startswith("common/message/") and n.endswith(".json"):
                    spec = json.loads(_strip_comments(z.read(n).decode()))
                    messages[spec["name"]] = Message(spec)
        return Schemas(messages)

    def api(self, name: str) -> Api:
        return Api(self.messages[name + "Request"], self.messages[name + "Response"])

    def apis(self) -> dict[int, Api]:
        out = {}
        for name, m in self.messages.items():
            if name.endswith("Request") and m.api_key is not None:
                resp = self.messages.get(name.removesuffix("Request") + "Response")
                if resp is not None:
                    out[m.api_key] = Api(m, resp)
        return out


def _recv_exact(s: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class Conn:
    """One connection sending schema-encoded requests one at a time."""

    def __init__(self, bootstrap: str, timeout_s: float = 15.0, client_id: str = "parity"):
        self.client_id = client_id
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.sock.settimeout(timeout_s)
        self.schemas = Schemas.load()
        self.correlation_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, api: str, version: int, body: dict | None = None) -> dict | None:
        """The decoded response body, or None if the broker closed the connection."""
        a = self.schemas.api(api)
        self.correlation_id += 1
        self.sock.sendall(a.encode_request(version, self.correlation_id, body or {}, self.client_id))
        size = _recv_exact(self.sock, 4)
        if size is None:
            return None
        frame = _recv_exact(self.sock, struct.unpack(">i", size)[0])
        if frame is None:
            return None
        cid, resp = a.decode_response(version, frame)
        assert cid == self.correlation_id, (cid, self.correlation_id)
        return resp


def call(bootstrap: str, api: str, version: int, body: dict | None = None) -> dict | None:
    with Conn(bootstrap) as c:
        return c.call(api, version, body)
