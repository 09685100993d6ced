#!/usr/bin/env python3
"""Record the request frames a Kafka client sends to a fake broker on loopback.

Usage: capture.py OUT_DIR CLIENT_TAG -- client command with {port} ...
  e.g. capture.py tests/frames kcat-debian -- kcat -b 127.0.0.1:{port} -L -m 3

Each request frame (header + body, WITHOUT the 4-byte size prefix) is saved as
OUT_DIR/<api_key>-<api_version>-<CLIENT_TAG>.bin. ApiVersions is answered
(v0..v3 body layout, response header v0) advertising the APIs below, so the
client goes on to send the next request; Metadata v4 is answered with this
broker leading partition 0 of each requested topic (so producers and
consumers go on to Produce / ListOffsets / Fetch); every other request is
recorded and left unanswered.
"""
import socket
import struct
import subprocess
import sys
import threading

import os

# Set FJORD_CAPTURE_METADATA_MAX=4 to make a new client fall back to Metadata
# v4 (the only version answered) and go on to Produce / Fetch.
METADATA_MAX = int(os.environ.get("FJORD_CAPTURE_METADATA_MAX", "12"))
ADVERTISED = {0: (3, 11), 1: (4, 16), 2: (1, 8), 3: (0, METADATA_MAX), 18: (0, 4), 22: (0, 5)}


def api_versions_response(correlation_id, version):
    body = struct.pack(">h", 0)
    entries = sorted(ADVERTISED.items())
    if version >= 3:
        body += bytes([len(entries) + 1])
        for key, (lo, hi) in entries:
            body += struct.pack(">hhh", key, lo, hi) + b"\x00"
        body += struct.pack(">i", 0) + b"\x00"
    else:
        body += struct.pack(">i", len(entries))
        for key, (lo, hi) in entries:
            body += struct.pack(">hhh", key, lo, hi)
        if version >= 1:
            body += struct.pack(">i", 0)
    payload = struct.pack(">i", correlation_id) + body
    return struct.pack(">i", len(payload)) + payload


def metadata_v4_response(correlation_id, port, frame):
    """Metadata v4 answer: this fake broker (node 1) leads partition 0 of every
    topic the request names (or of "orders" when it names none)."""
    client_id_len = struct.unpack(">h", frame[8:10])[0]
    pos = 10 + max(client_id_len, 0)
    (count,) = struct.unpack(">i", frame[pos:pos + 4])
    pos += 4
    names = []
    for _ in range(max(count, 0)):
        (n,) = struct.unpack(">h", frame[pos:pos + 2])
        names.append(frame[pos + 2:pos + 2 + n])
        pos += 2 + n
    if not names:
        names = [b"orders"]
    host = b"127.0.0.1"
    body = struct.pack(">i", 0)  # throttle
    body += struct.pack(">i", 1) + struct.pack(">ih", 1, len(host)) + host
    body += struct.pack(">ih", port, -1)  # port, null rack
    body += struct.pack(">h", -1)  # null cluster id
    body += struct.pack(">i", 1)  # controller
    body += struct.pack(">i", len(names))
    for name in names:
        body += struct.pack(">hh", 0, len(name)) + name + b"\x00"
        body += struct.pack(">i", 1) + struct.pack(">hii", 0, 0, 1)
        body += struct.pack(">ii", 1, 1) + struct.pack(">ii", 1, 1)
    payload = struct.pack(">i", correlation_id) + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(listener, out_dir, tag, seen):
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(listener, conn, out_dir, tag, seen), daemon=True).start()


def handle(listener, conn, out_dir, tag, seen):
    if True:
        with conn:
            while True:
                prefix = recv_exact(conn, 4)
                if prefix is None:
                    break
                (size,) = struct.unpack(">i", prefix)
                frame = recv_exact(conn, size)
                if frame is None:
                    break
                key, version, correlation_id = struct.unpack(">hhi", frame[:8])
                name = f"{out_dir}/{key}-{version}-{tag}.bin"
                if name not in seen:
                    seen.add(name)
                    with open(name, "wb") as f:
                        f.write(frame)
                    print("captured", name, len(frame), "bytes", file=sys.stderr)
                if key == 18:
                    conn.sendall(api_versions_response(correlation_id, version))
                elif key == 3 and version == 4:
                    port = listener.getsockname()[1]
                    conn.sendall(metadata_v4_response(correlation_id, port, frame))


def main():
    sep = sys.argv.index("--")
    out_dir, tag = sys.argv[1], sys.argv[2]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    seen = set()
    threading.Thread(target=serve, args=(listener, out_dir, tag, seen), daemon=True).start()
    cmd = [a.replace("{port}", str(port)) for a in sys.argv[sep + 1:]]
    stdin = sys.stdin if not sys.stdin.isatty() else subprocess.DEVNULL
    try:
        subprocess.run(cmd, timeout=8, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pass
    listener.close()


if __name__ == "__main__":
    main()
