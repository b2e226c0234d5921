"""A hostile datagram sender and the probes that time segopsd's loop.

Shared by tests/integration/test_hostile_loop.py (a short run in CI)
and bench/run-hostile-loop.py (the full-size run with figures).

- Flooder: threads that keep the events socket full of the largest
  datagrams it takes, each nothing but short invalid lines ("x\\n"),
  the input that costs segopsd the most work per byte.
- PingProbe: a thread that pings the control socket over and over on
  fresh connections and records each round trip.
- WatchdogListener: plays systemd's notify socket (NOTIFY_SOCKET) and
  records when each WATCHDOG=1 arrives; env() gives what the daemon
  needs to ping it (WATCHDOG_USEC).
"""

import json
import os
import socket
import threading
import time


class Flooder:
    """nthreads senders, each on its own socket, each blocking in
    sendto() whenever the daemon's queue is full: the queue stays full
    for as long as the flooder runs."""

    def __init__(self, path, size, nthreads=2, line=b'x\n', inflight=2):
        """inflight: datagrams each sender may have queued (the kernel
        charges them to its send buffer): more keep the socket fuller,
        and make a flush or a stop read longer."""
        self.path = path
        self.inflight = inflight
        self.payload = line * (size // len(line))
        self.nthreads = nthreads
        self.sent = 0
        self.errors = 0
        self._stop = threading.Event()
        self._threads = []
        self._lock = threading.Lock()

    def _run(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # The kernel doubles the value, and needs some room for its own.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                     self.inflight * len(self.payload) // 2 + 4096)
        # A blocked send must notice stop() soon.
        s.settimeout(0.1)
        try:
            while not self._stop.is_set():
                try:
                    s.sendto(self.payload, self.path)
                    with self._lock:
                        self.sent += 1
                except socket.timeout:
                    continue
                except OSError:
                    # The daemon stopped (EPIPE, ENOENT, ...).
                    with self._lock:
                        self.errors += 1
                    self._stop.wait(0.01)
        finally:
            s.close()

    def start(self):
        for _ in range(self.nthreads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self._threads = []


def timed_op(path, op, timeout):
    """Send one op on a fresh control connection; (seconds, reply)."""
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((json.dumps(op) + '\n').encode())
        buf = b''
        while b'\n' not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return time.monotonic() - t0, json.loads(buf.split(b'\n')[0] or b'null')


class _Background:
    """A daemon thread running self._run until stop(); _run watches
    self._stop. join_timeout bounds the wait for it at stop."""

    join_timeout = 5.0

    def __init__(self):
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.join_timeout)


class PingProbe(_Background):
    """Pings the control socket back to back (pause seconds apart) until
    stopped; latencies holds each round trip in seconds, failures the
    pings that got no answer within timeout."""

    def __init__(self, path, pause=0.01, timeout=30.0):
        super().__init__()
        self.path = path
        self.pause = pause
        self.timeout = timeout
        self.join_timeout = timeout + 5
        self.latencies = []
        self.failures = []

    def _run(self):
        while not self._stop.is_set():
            try:
                dt, reply = timed_op(self.path, {'op': 'ping'}, self.timeout)
                if reply and reply.get('ok') is True:
                    self.latencies.append(dt)
                else:
                    self.failures.append(repr(reply))
            except (OSError, ValueError) as e:
                self.failures.append(repr(e))
            self._stop.wait(self.pause)

    def worst(self):
        return max(self.latencies) if self.latencies else None


class WatchdogListener(_Background):
    """systemd's side of sd_notify: a datagram socket at path; arrivals
    holds the monotonic time of each WATCHDOG=1, statuses (time, text)
    of each STATUS=."""

    def __init__(self, path, watchdog_sec):
        super().__init__()
        self.path = path
        self.watchdog_usec = int(watchdog_sec * 1e6)
        self.arrivals = []
        self.statuses = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.1)

    def env(self):
        return {'NOTIFY_SOCKET': self.path,
                'WATCHDOG_USEC': str(self.watchdog_usec)}

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            lines = data.split(b'\n')
            if b'WATCHDOG=1' in lines:
                self.arrivals.append(time.monotonic())
            for line in lines:
                if line.startswith(b'STATUS='):
                    self.statuses.append((time.monotonic(),
                                          line[7:].decode('utf-8', 'replace')))

    def stop(self):
        super().stop()
        self._sock.close()

    def gaps(self, since=None, until=None):
        """Gaps between consecutive pings inside [since, until], plus
        the open gap from the last one to until (a daemon that stopped
        pinging has no closing arrival)."""
        t = [a for a in self.arrivals
             if (since is None or a >= since) and (until is None or a <= until)]
        g = [b - a for a, b in zip(t, t[1:])]
        if until is not None and t:
            g.append(until - t[-1])
        return g

    def worst_gap(self, since=None, until=None):
        g = self.gaps(since, until)
        return max(g) if g else None
