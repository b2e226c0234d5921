#!/usr/bin/env python3
"""run-hostile-loop.py - segopsd's loop under a datagram flood of short
lines (issue 10, item 2), at full size, with figures.

Senders keep the events socket full of the largest datagrams it takes
(max_datagram_bytes, 256K by default), each nothing but "x\\n" lines
(~131,000 rejected lines per datagram). Meanwhile:
  - a probe pings the control socket back to back and times each ping;
  - the daemon pings a fake systemd notify socket (WATCHDOG_USEC);
  - a client sends a valid event by datagram every 20 ms, and a flush
    runs every 2 s: each must return, and every valid event sent before
    it must be delivered by the end.
Printed: worst and 99th-percentile ping, the worst watchdog gap, the
worst flush, the stats counters that show the bound at work, and PASS
or FAIL against the targets (worst ping <= 200 ms; watchdog gap <=
WatchdogSec/2 + 0.5 s; every flush answered; every valid event
delivered). Then the daemon is stopped under the flood, and the stop's
duration and its watchdog gaps are printed too.

The machine is shared: the load average is printed with the figures.

usage: bench/run-hostile-loop.py [-b BUILD_DIR] [--seconds S]
                                 [--senders N] [--inflight N]
                                 [--watchdog-sec S]
                                 [--config section__key=value ...]
"""

import argparse
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'lib'))

import harness  # noqa: E402
from harness import Daemon, MockUpstream, event_id, make_event  # noqa: E402
from loopprobe import (Flooder, PingProbe, WatchdogListener,  # noqa: E402
                       timed_op)

PING_TARGET = 0.200


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float('nan')


def parse_size(text):
    mult = {'K': 1024, 'M': 1024 ** 2}.get(text[-1:].upper(), 1)
    return int(text.rstrip('KkMm')) * mult


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('-b', '--build', default=os.environ.get('BUILD', 'build'))
    ap.add_argument('--seconds', type=float, default=12.0)
    ap.add_argument('--senders', type=int, default=2)
    ap.add_argument('--watchdog-sec', type=float, default=2.0)
    ap.add_argument('--inflight', type=int, default=8,
                    help='datagrams each sender may have queued')
    ap.add_argument('--config', action='append', default=[],
                    help='section__key=value for the daemon')
    a = ap.parse_args()
    os.environ['SEGOPSD'] = os.path.abspath(
        os.path.join(a.build, 'daemon', 'segopsd'))
    overrides = dict(kv.split('=', 1) for kv in a.config)
    overrides.setdefault('log__level', 'info')

    tmp = tempfile.mkdtemp(prefix='segops-hostile-')
    up = MockUpstream(api_key=harness.DEFAULT_KEY).start()
    wd = WatchdogListener(os.path.join(tmp, 'notify.sock'), a.watchdog_sec)
    wd.start()
    d = Daemon(tmp, up.url, env=wd.env(), **overrides)
    d.start()
    try:
        return attack(a, d, up, wd, overrides)
    finally:
        d.kill()
        up.stop()
        wd.stop()


def attack(a, d, up, wd, overrides):
    # The largest datagram it takes: the default, 256K, unless set.
    size = parse_size(overrides.get('listen__max_datagram_bytes', '256K'))
    flood = Flooder(d.events_socket, size, a.senders, inflight=a.inflight)
    probe = PingProbe(d.control_socket, timeout=300)
    sent_ids, flushes, fails = [], [], []
    stop = threading.Event()

    def good_sender():
        i = 0
        while not stop.is_set():
            try:
                d.send_dgram(harness.ndjson([make_event(i)]))
                sent_ids.append(event_id(i))
                i += 1
            except OSError:
                pass
            stop.wait(0.02)

    def flusher():
        while not stop.wait(2.0):
            try:
                dt, r = timed_op(d.control_socket,
                                 {'op': 'flush', 'timeout_ms': 30000}, 300)
                flushes.append(dt)
                if not (r and r.get('ok')):
                    fails.append(r)
            except OSError as e:
                fails.append(repr(e))

    t0 = time.monotonic()
    flood.start()
    probe.start()
    helpers = [threading.Thread(target=good_sender, daemon=True),
               threading.Thread(target=flusher, daemon=True)]
    for t in helpers:
        t.start()
    time.sleep(a.seconds)
    stop.set()
    for t in helpers:
        t.join(timeout=300)
    probe.stop()
    t1 = time.monotonic()
    st = d.stats(timeout=300)
    final = timed_op(d.control_socket, {'op': 'flush', 'timeout_ms': 30000},
                     60)
    up.wait_until(lambda: set(sent_ids) <= set(up.events), 30)
    missing = set(sent_ids) - set(up.events)

    # The stop, still under the flood.
    s0 = time.monotonic()
    rc = d.stop(timeout=300)
    s1 = time.monotonic()
    flood.stop()

    worst_wd = wd.worst_gap(t0, t1)
    stop_wd = wd.worst_gap(s0, s1)
    wd_limit = a.watchdog_sec / 2 + 0.5
    ing = st.get('ingest', {})
    print('load average: %s' % ' '.join(open('/proc/loadavg').read().split()[:3]))
    print('attack: %.1f s, %d senders, %d datagrams of %d B sent'
          % (t1 - t0, a.senders, flood.sent, size))
    print('pings: %d answered, %d failed; worst %.1f ms, p99 %.1f ms, '
          'median %.1f ms' % (len(probe.latencies), len(probe.failures),
                              1000 * (probe.worst() or float('nan')),
                              1000 * pct(probe.latencies, 0.99),
                              1000 * pct(probe.latencies, 0.5)))
    print('watchdog (WatchdogSec=%g): %d pings, worst gap %.3f s (limit %.2f)'
          % (a.watchdog_sec, len(wd.arrivals), worst_wd or float('nan'),
             wd_limit))
    print('flushes: %d, worst %.3f s, %d failed; final flush %.3f s %s'
          % (len(flushes), max(flushes) if flushes else float('nan'),
             len(fails), final[0], final[1]))
    print('valid events: %d sent, %d missing' % (len(sent_ids), len(missing)))
    print('stats: received %s rejected %s datagrams %s ingest %s'
          % (st.get('received'), st.get('rejected'), ing.get('datagrams'),
             {k: v for k, v in ing.items() if 'burst' in k or 'drain' in k
              or 'paus' in k}))
    print('stop under the flood: %.3f s, exit %d, worst watchdog gap %s'
          % (s1 - s0, rc, '%.3f s' % stop_wd if stop_wd else '-'))
    ok = (probe.worst() is not None and probe.worst() <= PING_TARGET and
          not probe.failures and worst_wd is not None and
          worst_wd <= wd_limit and not fails and not missing and rc == 0 and
          (stop_wd is None or stop_wd <= wd_limit))
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
