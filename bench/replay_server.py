"""Serve one recorded HTTP response, whole, to every request: a server that
costs nothing and always hands the client the same bytes in the same pieces.

    python bench/replay_server.py PORT RESPONSE_FILE

Used by ``stream_cpu.py --replay`` to measure the client's per-token code
path with the server's pacing and the machine's scheduling taken out.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path


def read_request(conn: socket.socket, buffer: bytes) -> bytes | None:
    """Consume one request (headers and Content-Length body); return what follows it."""
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            return None
        rest += data
    return rest[length:]


def serve(conn: socket.socket, response: bytes) -> None:
    buffer = b""
    with conn:
        while (buffer := read_request(conn, buffer)) is not None:
            conn.sendall(response)


def main() -> None:
    port, response = int(sys.argv[1]), Path(sys.argv[2]).read_bytes()
    listener = socket.create_server(("127.0.0.1", port))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, response), daemon=True).start()


if __name__ == "__main__":
    main()
