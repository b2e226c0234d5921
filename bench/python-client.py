#!/usr/bin/env python3
"""python-client.py - what the segops Python client costs, and how fast it
goes end to end. Driven by bench/run-python.sh, which starts bench/sink
and segopsd and sets SEGOPS_SOCKET, SEGOPS_CONTROL_SOCKET and SINK_PORT.

1. The cost of one SegOpsClient.track() call with segopsd running:
   CALLS calls, each timed alone (time.perf_counter_ns before and after),
   median and p99. Beside it, CPython's floor measured the same way: an
   empty function taking the same keyword arguments, and the timer pair
   alone; a call cannot cost less than the first.
2. End to end: EVENTS events tracked as fast as one thread can, each
   with its own event_id (e0, e1, ...), from the first track() until
   the sink has seen every one; events/s over that span (the sink's
   last arrival, CLOCK_MONOTONIC like time.monotonic_ns).

usage: python-client.py [-n CALLS] [-e EVENTS]
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'python'))

import segops  # noqa: E402

TARGET_MEDIAN_US = 2.0
TARGET_P99_US = 100.0
TARGET_EPS = 200000


def sink_count(port):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
    try:
        conn.request('GET', '/_count')
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def percentiles(samples_ns):
    s = sorted(samples_ns)
    return (statistics.median(s) / 1000.0,
            s[min(len(s) - 1, int(len(s) * 0.99))] / 1000.0)


def timed_calls(fn, n):
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        fn(i)
        out[i] = clock() - t0
    return out


def verdict(label, ok):
    print('%s  %s' % ('PASS' if ok else 'FAIL', label))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('-n', type=int, default=100000, help='timed track() calls')
    ap.add_argument('-e', type=int, default=500000, help='events end to end')
    args = ap.parse_args()
    port = int(os.environ['SINK_PORT'])
    users = ['user-%d' % (i % 1000) for i in range(1000)]

    # --- 1. the cost of one call ----------------------------------------
    def empty(*, user_id=None, event_type=None, payload=None):
        pass

    floor = timed_calls(lambda i: empty(user_id=users[i % 1000],
                                        event_type='page_view',
                                        payload={'i': i}), args.n)
    timer = timed_calls(lambda i: None, args.n)
    client = segops.SegOpsClient()
    track = client.track
    costs = timed_calls(lambda i: track(user_id=users[i % 1000],
                                        event_type='page_view',
                                        payload={'i': i}), args.n)
    client.flush(120)
    med, p99 = percentiles(costs)
    fmed, fp99 = percentiles(floor)
    tmed, tp99 = percentiles(timer)
    print('track():        median %.2f us  p99 %.2f us  (%d calls, dropped %d)'
          % (med, p99, args.n, client.dropped))
    print('floor (empty function, same arguments, same lambda): median %.2f us'
          '  p99 %.2f us' % (fmed, fp99))
    print('timer pair + lambda alone: median %.2f us  p99 %.2f us'
          % (tmed, tp99))
    verdict('track() median <= %.0f us' % TARGET_MEDIAN_US,
            med <= TARGET_MEDIAN_US)
    verdict('track() p99 <= %.0f us' % TARGET_P99_US, p99 <= TARGET_P99_US)

    # --- 2. end to end ------------------------------------------------------
    n = args.e
    ids = ['e%d' % i for i in range(n)]
    payloads = [{'i': i, 'path': '/home'} for i in range(1000)]
    client2 = segops.SegOpsClient(max_queue=n)
    track = client2.track
    before = sink_count(port)
    t0 = time.monotonic_ns()
    c0 = time.process_time()
    for i in range(n):
        track({'user_id': users[i % 1000], 'event_type': 'page_view',
               'payload': payloads[i % 1000], 'event_id': ids[i]})
    t1 = time.monotonic_ns()
    deadline = time.monotonic() + 300
    while True:
        c = sink_count(port)
        if c['unique'] - before['unique'] >= n or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    cpu = time.process_time() - c0
    span = (c['last_ns'] - t0) / 1e9
    eps = (c['unique'] - before['unique']) / span if span > 0 else 0
    print('end to end:     %d events in %.2f s = %.0f events/s '
          '(track loop %.2f s; unique %d, duplicates %d; client dropped %d; '
          'client CPU %.2f s)'
          % (n, span, eps, (t1 - t0) / 1e9, c['unique'] - before['unique'],
             c['duplicates'] - before['duplicates'], client2.dropped, cpu))
    verdict('end to end >= %d events/s' % TARGET_EPS, eps >= TARGET_EPS)
    client2.close()
    client.close()
    print('load average: %s' % open('/proc/loadavg').read().strip())
    return 0 if c['unique'] - before['unique'] == n else 1


if __name__ == '__main__':
    sys.exit(main())
