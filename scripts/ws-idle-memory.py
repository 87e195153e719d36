#!/usr/bin/env python3
"""Memory per idle WebSocket connection (issue 17): opens N WebSocket connections to a
running Ferrosip (the HTTP upgrade with the `sip` subprotocol done, nothing sent after)
and prints its RSS before and after, as scripts/tls-idle-memory.py does for TLS.

    ferrosip run -f bench.cfg &      # listen=ws:127.0.0.1:25080, tcp_max_connections=12000,
                                     # tcp_connection_lifetime=3600, loadmodule "websocket.so"
    python3 scripts/ws-idle-memory.py <ferrosip pid> 10000 [port]

Needs an open-file limit above N for both processes (ulimit -n).
"""
import socket
import sys
import time

pid, n = int(sys.argv[1]), int(sys.argv[2])
port = int(sys.argv[3]) if len(sys.argv) > 3 else 25080


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


UPGRADE = (
    "GET / HTTP/1.1\r\n"
    f"Host: 127.0.0.1:{port}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: sip\r\n\r\n"
).encode()

before = rss_kib()
conns = []
start = time.time()
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(UPGRADE)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit(f"connection {i} closed during the upgrade")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"connection {i}: {answer.splitlines()[0]!r}")
    conns.append(s)
time.sleep(3)
after = rss_kib()
print(
    f"connections={n} upgrades_s={time.time() - start:.1f} rss_before_kib={before} "
    f"rss_after_kib={after} per_connection_bytes={(after - before) * 1024 // n}"
)
