#!/usr/bin/env python3
"""Memory per idle TLS connection (issue 17): opens N TLS connections to a running
Ferrosip (handshake done, nothing sent) and prints its RSS before and after.

    ferrosip run -f bench.cfg &      # listen=tls:127.0.0.1:25060, tls_max_connections=12000,
                                     # tcp_connection_lifetime=3600, a tls certificate
    python3 scripts/tls-idle-memory.py <ferrosip pid> 10000 [port]

Needs an open-file limit above N for both processes (ulimit -n).
"""
import socket
import ssl
import sys
import time

pid, n = int(sys.argv[1]), int(sys.argv[2])
port = int(sys.argv[3]) if len(sys.argv) > 3 else 25060


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("no VmRSS")


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
before = rss_kib()
conns = []
start = time.time()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    conns.append(ctx.wrap_socket(s, server_hostname="sip.example.com"))
time.sleep(3)
after = rss_kib()
print(
    f"connections={n} handshakes_s={time.time() - start:.1f} rss_before_kib={before} "
    f"rss_after_kib={after} per_connection_bytes={(after - before) * 1024 // n}"
)
