#!/usr/bin/env python3
"""Integration tests of what segopsd tells an operator without a log
(issue 12, items 3 and 4): the metrics op, checked against the rules of
the Prometheus text exposition format (promtool is not at hand) and
against stats; and the STATUS= lines systemd shows, through a fake
NOTIFY_SOCKET, with the upstream up, down (nothing listening), answering
429 with Retry-After, and in a dry run.

STATUS= goes out at the tick (once a second) after a change of the
upstream's state, and otherwise at most every status_interval seconds
when its text changed: 2 s here, to keep the test short.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import (SegopsTestCase, event_id, make_event,  # noqa: E402
                     send_stream)
from loopprobe import WatchdogListener  # noqa: E402

STATUS_INTERVAL = 2.0
WAIT = 20.0          # ceiling for any condition (ASan, a loaded machine)
SLACK = 0.3          # timer and scheduling jitter between two STATUS= lines

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*'
# A label value: anything but '"', '\\' and newline, or those escaped.
LVALUE = r'(?:[^"\\\n]|\\\\|\\"|\\n)*'
SAMPLE = re.compile(r'^(%s)(?:\{((?:%s="%s")(?:,%s="%s")*,?)?\})? (\S+)'
                    r'(?: (-?\d+))?$' % (NAME, LABEL, LVALUE, LABEL, LVALUE))
PAIR = re.compile(r'(%s)="(%s)"' % (LABEL, LVALUE))


def parse_value(text):
    """A sample value as Go's ParseFloat takes it (what Prometheus does)."""
    if text in ('NaN', '+Inf', '-Inf', 'Inf'):
        return float(text)
    if not re.match(r'^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$', text):
        raise ValueError('bad sample value %r' % text)
    return float(text)


def parse_exposition(text):
    """Parse text by the exposition format's rules (0.0.4), plus the lint
    rules promtool applies; AssertionError on the first break. Returns
    {family: {'type', 'help', 'samples': {(name, labels): value}}}."""
    assert text.endswith('\n'), 'the text must end in a newline'
    families, order, current = {}, [], None
    for n, line in enumerate(text[:-1].split('\n'), 1):
        where = 'line %d %r' % (n, line)
        if line.startswith('#'):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ('HELP', 'TYPE'):
                name = parts[2]
                assert re.fullmatch(NAME, name), 'bad name: ' + where
                fam = families.setdefault(name, {'type': None, 'help': None,
                                                 'samples': {}})
                assert not fam['samples'], \
                    '%s after the samples: %s' % (parts[1], where)
                key = parts[1].lower()
                assert fam[key] is None, '%s twice: %s' % (parts[1], where)
                value = parts[3] if len(parts) > 3 else ''
                if key == 'type':
                    assert value in ('counter', 'gauge', 'histogram',
                                     'summary', 'untyped'), where
                else:
                    assert value, 'empty HELP: ' + where
                    # Only \\ and \n are escapes in HELP.
                    assert not re.search(r'\\[^\\n]', value), where
                fam[key] = value
                if name not in order:
                    order.append(name)
                current = name
            continue
        assert line.strip(), 'empty line: ' + where
        m = SAMPLE.match(line)
        assert m, 'not a sample: ' + where
        name, labels, value = m.group(1), m.group(2) or '', m.group(3)
        # No histograms or summaries here: a sample's name is its family's.
        assert name == current, 'sample outside its family: ' + where
        pairs = PAIR.findall(labels)
        keys = [k for k, _ in pairs]
        assert len(set(keys)) == len(keys), 'label twice: ' + where
        assert not any(k.startswith('__') for k in keys), where
        series = (name, tuple(sorted(pairs)))
        fam = families[name]
        assert series not in fam['samples'], 'series twice: ' + where
        fam['samples'][series] = parse_value(value)
    for name, fam in families.items():
        assert fam['type'] and fam['help'], name + ': no TYPE or HELP'
        assert fam['samples'], name + ': no samples'
        # promtool check metrics' lint rules.
        if fam['type'] == 'counter':
            assert name.endswith('_total'), name + ': a counter without _total'
            assert all(v >= 0 for v in fam['samples'].values()), name
        else:
            assert not name.endswith('_total'), name + ': _total on a ' \
                + fam['type']
        assert name.startswith('segopsd_'), name
    return families


def numeric_leaves(obj, path=''):
    """(dotted path, value) of every number and boolean in stats, except
    the per-client list (a table of processes, not a metric)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = path + '.' + k if path else k
            if p in ('clients', 'ok'):
                continue
            yield from numeric_leaves(v, p)
    elif isinstance(obj, (bool, int, float)):
        yield path, obj


# Names that say their unit where the key does not.
RENAMED = {'max_memory': 'max_memory_bytes'}


def metric_name(path):
    """stats' key to the metric's name (metrics.h): '_s' and '_ms' are
    seconds."""
    base = 'segopsd_' + RENAMED.get(path, path).replace('.', '_')
    if base.endswith('_ms'):
        return base[:-3] + '_seconds', 0.001
    if base.endswith('_s'):
        return base[:-2] + '_seconds', 1
    return base, 1


# Figures that move with the clock between the stats and metrics ops,
# and counters that count the metrics op itself.
MOVING = re.compile(r'(^uptime_s$|_s$|^rates\.(in|out)_)')
SELF_COUNTED = ('ops', 'ingest.connections')


def closed_port_url():
    """An http:// URL with credentials where nothing listens."""
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return 'http://user:s3cretpw@127.0.0.1:%d/?token=qs3cret#f' % port


class StatusTests(SegopsTestCase):

    def notified_daemon(self, url=None, **overrides):
        wd = WatchdogListener(os.path.join(self.tmpdir, 'notify%d.sock'
                                           % len(self.daemons)), 0)
        wd.start()
        self.addCleanup(wd.stop)
        d = self.make_daemon(url=url, env={'NOTIFY_SOCKET': wd.path},
                             log__status_interval=str(STATUS_INTERVAL),
                             **overrides)
        d.start()
        return d, wd

    def wait_status(self, wd, pattern, after=0):
        """The first STATUS= line from index after on that matches
        pattern: (index, time, text)."""
        rx = re.compile(pattern)

        def found():
            for i, (t, text) in enumerate(wd.statuses[after:], after):
                if rx.search(text):
                    return i, t, text
            return None
        hit = self.upstream.wait_until(found, WAIT)
        self.assertTrue(hit, 'no STATUS= line matching %r; got %r'
                        % (pattern, [s for _, s in wd.statuses]))
        return hit

    def test_metrics_match_stats_and_the_format(self):
        d = self.start_daemon()
        send_stream(d, [make_event(i) for i in range(5)])
        d.control({'type': 'bogus'})          # one rejected line
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 5})
        self.assertEventsDelivered([event_id(i) for i in range(5)])

        stats = d.stats()
        reply = d.control({'op': 'metrics'})[0]
        self.assertEqual(set(reply), {'ok', 'text'})
        self.assertIs(reply['ok'], True)
        fams = parse_exposition(reply['text'])
        # Prometheus's own linter too, where it is installed (Debian:
        # the prometheus package; $PROMTOOL names another copy).
        promtool = os.environ.get('PROMTOOL') or shutil.which('promtool')
        if promtool:
            r = subprocess.run([promtool, 'check', 'metrics'], input=reply['text'],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ''))
        values = {}
        for fam in fams.values():
            values.update(fam['samples'])

        def value(name, **labels):
            key = (name, tuple(sorted(labels.items())))
            self.assertTrue(key in values, 'no metric %s%r' % (name, labels))
            return values[key]

        # Every number of stats is a metric, of the same value.
        for path, v in numeric_leaves(stats):
            top = path.split('.')[0]
            if top in ('rejected', 'dropped', 'rejected_total'):
                continue   # by reason, below
            name, scale = metric_name(path)
            if name + '_total' in fams:
                name += '_total'
            want = float(v) * scale
            got = value(name)
            if MOVING.search(path):
                self.assertAlmostEqual(got, want, delta=2 + want * 0.5,
                                       msg=path)
            elif path in SELF_COUNTED:
                self.assertIn(got - want, (0, 1), path)
            else:
                self.assertEqual(got, want, path)
        for reason, n in stats['rejected'].items():
            self.assertEqual(value('segopsd_rejected_total', reason=reason), n)
        for reason, n in stats['dropped'].items():
            self.assertEqual(value('segopsd_dropped_total', reason=reason), n)
        self.assertEqual(sum(v for (n, _), v in values.items()
                             if n == 'segopsd_rejected_total'),
                         stats['rejected_total'])
        self.assertEqual(value('segopsd_rejected_total', reason='bad_type'), 1)
        self.assertEqual(value('segopsd_sent_total'), 5)
        self.assertEqual(fams['segopsd_sent_total']['type'], 'counter')
        self.assertEqual(fams['segopsd_queued_events']['type'], 'gauge')
        # One state of each set is current.
        self.assertEqual(value('segopsd_upstream_state', state='ok'), 1)
        self.assertEqual(sum(v for (n, _), v in values.items()
                             if n == 'segopsd_upstream_state'), 1)
        self.assertEqual(value('segopsd_upstream_up'), 1)
        self.assertEqual(value('segopsd_session_state', state='disabled'), 1)
        self.assertEqual(value('segopsd_spool_state', state='off'), 1)

        # The stats side of the contract, with the upstream up.
        up = stats['upstream']
        self.assertEqual(up['url'], self.upstream.url)
        self.assertEqual((up['failing_s'], up['retry_in_s'], up['paused_s'],
                          up['failures']), (0, 0, 0, 0))
        self.assertGreaterEqual(up['since_s'], 0)
        self.assertEqual(stats['oldest_held_age_s'], 0)
        r = stats['rates']
        self.assertGreater(r['in_10s'], 0)
        self.assertGreater(r['out_1m'], 0)
        self.assertEqual((r['dropped_1m'], r['rejected_1m']), (0, 1))

    def test_status_up_then_429_with_rates(self):
        d, wd = self.notified_daemon()
        self.wait_status(wd, r'^idle, nothing held$')
        send_stream(d, [make_event(i) for i in range(5)])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 5})
        self.wait_status(wd, r'^delivering, [\d.]+k? ev/s in, 0 queued$')

        self.upstream.set_default(429, headers={'Retry-After': '30'})
        send_stream(d, [make_event(9)])
        i, _, text = self.wait_status(
            wd, r'^upstream throttling for \d+s \(throttled, paused \d+s by '
                r'Retry-After\), 1 event held$')
        st = d.stats()
        up = st['upstream']
        self.assertEqual(up['state'], 'throttled')
        self.assertEqual(up['last_status'], 429)
        self.assertGreater(up['paused_s'], 15)
        self.assertLessEqual(up['paused_s'], 30)
        self.assertGreater(up['retry_in_s'], 15)
        self.assertGreaterEqual(up['failures'], 1)
        self.assertGreater(up['failing_s'], 0)
        self.assertEqual(st['queued_events'], 1)
        # The held event's age grows with the pause.
        aged = d.wait_for_stats(lambda s: s['oldest_held_age_s'] >= 1.0,
                                timeout=WAIT)
        self.assertTrue(aged, 'oldest_held_age_s stayed under 1 s')
        self.assertLess(d.stats()['oldest_held_age_s'], 60)

    def test_status_down_is_rate_limited(self):
        url = closed_port_url()
        d, wd = self.notified_daemon(url=url)
        send_stream(d, [make_event(1)])
        i, t0, _ = self.wait_status(
            wd, r'^upstream unreachable for \d+s \(retrying(, next try in '
                r'\d+s)?\), 1 event held$')
        # Its text changes each second ("for 1s", "for 2s"): a line at
        # most every status_interval, as the state stays the same.
        j, t1, _ = self.wait_status(wd, r'^upstream unreachable', i + 1)
        self.assertGreaterEqual(t1 - t0, STATUS_INTERVAL - SLACK)
        st = d.stats()
        up = st['upstream']
        self.assertEqual(up['state'], 'retrying')
        self.assertEqual(up['url'], 'http://127.0.0.1:%d/' %
                         int(re.search(r':(\d+)/', url).group(1)))
        self.assertGreaterEqual(up['failures'], 2)
        self.assertGreaterEqual(up['failing_s'], STATUS_INTERVAL - SLACK)
        self.assertGreater(st['status']['deferred'], 0)
        self.assertGreaterEqual(st['status']['sent'], 2)
        # The credentials go nowhere an operator looks.
        text = d.control({'op': 'metrics'})[0]['text']
        for secret in ('s3cretpw', 'qs3cret'):
            self.assertNotIn(secret, repr(st))
            self.assertNotIn(secret, text)
            self.assertFalse([s for _, s in wd.statuses if secret in s])

    def test_status_dry_run(self):
        d, wd = self.notified_daemon(url='stdout')
        send_stream(d, [make_event(i) for i in range(3)])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 3})
        self.wait_status(wd, r'^dry run, [\d.]+ ev/s$')
        st = d.stats()
        self.assertEqual(st['upstream']['state'], 'dry_run')
        self.assertEqual(st['upstream']['url'], 'stdout')
        self.assertEqual(st['upstream']['failing_s'], 0)


if __name__ == '__main__':
    harness.main()
