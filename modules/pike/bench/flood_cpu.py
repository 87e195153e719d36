#!/usr/bin/env python3
"""CPU per rejected request under a one-source flood: Ferrosip vs Kamailio.

Both engines run Kamailio's stock /etc/kamailio/kamailio.cfg with WITH_ANTIFLOOD (a
private copy for Kamailio, on its own port; Ferrosip reads it unmodified with -A and
-l). SIPp floods OPTIONS from 127.0.0.3 (N requests at R/s, nothing waited for); pike
blocks the source at its 22nd request (as Kamailio) and the config bans it in ipban, so all but the
first few are rejected by `$sht(ipban=>$si) != $null` -> exit. The CPU time of every
process of the engine's session (workers included) is read from /proc before and after
the flood; an idle interval of the same length is measured and subtracted.

usage: flood_cpu.py FERROSIP_BINARY [--requests N] [--rate R] [--runs K]
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO = os.path.join(HERE, "../../../tests/tests/scenarios/flood/options_flood.xml")


def session_cpu(sid):
    """Seconds of CPU (user+system) of every live process in session `sid`."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is state (field 3); session is field 6, utime 14, stime 15
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        finally:
            s.close()
        time.sleep(0.1)
    return False


def free_port(ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def flood(port, requests, rate):
    subprocess.run(
        ["sipp", f"127.0.0.1:{port}", "-sf", SCENARIO, "-i", "127.0.0.3",
         "-p", str(free_port("127.0.0.3")),
         "-t", "u1", "-nostdin", "-r", str(rate), "-rp", "1000", "-m", str(requests),
         "-l", str(requests), "-timeout", "120s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def measure(cmd, port, requests, rate, workdir):
    proc = subprocess.Popen(cmd, cwd=workdir, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(port):
            raise RuntimeError(f"{cmd[0]} did not bind {port}")
        time.sleep(1.0)
        sid = proc.pid
        idle_start = time.time()
        c0 = session_cpu(sid)
        time.sleep(requests / rate)
        idle = session_cpu(sid) - c0
        idle_secs = time.time() - idle_start
        c1 = session_cpu(sid)
        t1 = time.time()
        flood(port, requests, rate)
        secs = time.time() - t1
        busy = session_cpu(sid) - c1
        # Subtract what the engine spends idle over the same time.
        net = busy - idle * secs / idle_secs
        return net, busy, secs
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ferrosip")
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="flood-cpu-")
    cfg = os.path.join(work, "kamailio.cfg")
    shutil.copy("/etc/kamailio/kamailio.cfg", cfg)
    engines = {
        "ferrosip": ([os.path.abspath(a.ferrosip), "run", "-f", "/etc/kamailio/kamailio.cfg",
                      "-A", "WITH_ANTIFLOOD", "-l", "udp:127.0.0.1:5092"], 5092),
        "kamailio": (["kamailio", "-f", cfg, "-A", "WITH_ANTIFLOOD", "-DD", "-E", "-e",
                      "-l", "udp:127.0.0.1:5094", "-Y", work, "-P", os.path.join(work, "k.pid"),
                      "-m", "128", "-M", "16"], 5094),
    }
    results = {k: [] for k in engines}
    for run in range(a.runs):
        for name, (cmd, port) in engines.items():
            net, busy, secs = measure(cmd, port, a.requests, a.rate, work)
            us = net * 1e6 / a.requests
            results[name].append(us)
            print(f"run {run + 1} {name}: {a.requests} requests in {secs:.1f} s, "
                  f"CPU {busy:.2f} s (net of idle {net:.2f} s) = {us:.1f} us/request", flush=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in results.items()}
    print(f"median us/rejected request: ferrosip {med['ferrosip']:.1f}, kamailio {med['kamailio']:.1f}, "
          f"ratio {med['ferrosip'] / med['kamailio']:.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
