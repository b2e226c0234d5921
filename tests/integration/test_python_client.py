#!/usr/bin/env python3
"""Integration tests of the Python client (python/segops, issue 11,
SPEC section 7) against the real segopsd and the strict mock upstream.

The client runs in this process (PYTHONPATH is set to the checkout's
python/ directory below), except where a process boundary is the point:
fork, and a script that exits without shutdown() (atexit). Each test
checks what reached the upstream (event ids, fields, times, the session
each batch was sent under) and the client's and the daemon's counts.
"""

import asyncio
import datetime
import os
import subprocess
import sys
import textwrap
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.join(HERE, '..', '..', 'python')
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))
sys.path.insert(0, PYDIR)

import harness  # noqa: E402
from harness import SegopsTestCase, SharedDaemonTestCase  # noqa: E402

import segops  # noqa: E402
from segops import (AsyncSegOpsClient, DaemonUnavailableError,  # noqa: E402
                    Event, EventsDroppedError, InvalidEventError,
                    SegOpsClient, UserContext, sign_user_id)

PK_KEY = 'pk_test_0123456789abcdef'
SECRET = 'backend-signing-secret'
BIG = 100 * 1024    # an event larger than a datagram (and than 64 KiB)


def client_for(d, **kw):
    kw.setdefault('on_error', lambda e: None)
    return SegOpsClient(socket=d.events_socket,
                        control_socket=d.control_socket, **kw)


def by_type(upstream, event_type):
    return [e for e in upstream.events.values()
            if e['event_type'] == event_type]


class SharedCase(SharedDaemonTestCase):
    """One sk_ daemon for the tests that only look at their own events;
    max_message_bytes raised so that an event over 64 KiB is valid."""

    daemon_config = {'listen__max_message_bytes': '262144',
                     'batch__batch_size': '500'}

    def client(self, **kw):
        c = client_for(self.d, **kw)
        self.addCleanup(c.close)
        return c


class ApiTests(SharedCase):

    def test_track_identify_forms_and_flush(self):
        c = self.client()
        c.track(user_id='u1', event_type='kw', payload={'plan': 'pro'})
        c.track(Event(user_id='u2', event_type='obj', payload={'n': 1.5},
                      event_id='py-obj-1'))
        c.track({'user_id': 'u3', 'event_type': 'dict', 'event_id': 'py-d-1',
                 'payload': {'s': 'caf\u00e9 \u2603', 'l': [1, None, True]}})
        c.identify(user_id='u4', traits={'plan': 'team'})
        c.identify(UserContext('u5'))
        c.flush()
        up = self.upstream
        kw = by_type(up, 'kw')
        self.assertEqual([(e['user_id'], e['payload']) for e in kw],
                         [('u1', {'plan': 'pro'})])
        self.assertEqual(up.events['py-obj-1']['payload'], {'n': 1.5})
        self.assertEqual(up.events['py-d-1']['payload'],
                         {'s': 'caf\u00e9 \u2603', 'l': [1, None, True]})
        ident = sorted(by_type(up, 'context_identified'),
                       key=lambda e: e['user_id'])
        self.assertEqual([(e['user_id'], e['payload']) for e in ident],
                         [('u4', {'traits': {'plan': 'team'}}),
                          ('u5', {'traits': {}})])
        self.assertEqual(c.dropped, 0)
        self.assertNoViolations()

    def test_invalid_arguments_raise_and_count_nothing(self):
        c = self.client()
        bad = [dict(user_id='', event_type='x'),
               dict(user_id='u', event_type=None),
               dict(user_id='u', event_type='x', payload=[1]),
               dict(user_id='u' * 257, event_type='x'),
               dict(user_id='u', event_type='x', occurred_at='yesterday'),
               dict(user_id='u', event_type='x', occurred_at=True),
               dict(user_id='u', event_type='x', occurred_at=float('nan'))]
        for kw in bad:
            with self.assertRaises(InvalidEventError, msg=kw):
                c.track(**kw)
        with self.assertRaisesRegex(InvalidEventError, 'properties'):
            c.track({'user_id': 'u', 'event_type': 'x', 'properties': {}})
        with self.assertRaises(ValueError):     # InvalidEventError is one
            c.track(Event('u', 'x', event_id='not valid'))
        with self.assertRaises(InvalidEventError):
            c.identify(user_id='u', traits='plan')
        self.assertEqual(c.dropped, 0)

    def test_unencodable_payload_goes_to_on_error(self):
        errors = []
        c = self.client(on_error=errors.append)
        c.track(user_id='u1', event_type='bad', payload={'x': object()})
        c.track(user_id='u1', event_type='good-after-bad')
        with self.assertRaises(EventsDroppedError) as cm:
            c.flush()
        self.assertEqual(cm.exception.count, 1)
        self.assertEqual(len(by_type(self.upstream, 'good-after-bad')), 1)
        self.assertEqual(c.dropped, 1)
        self.upstream.wait_until(lambda: errors, 10)
        self.assertIsInstance(errors[0], EventsDroppedError)
        self.assertIn('not JSON serializable', str(errors[0]))
        c.flush()   # the drop was raised once

    def test_datetimes(self):
        c = self.client()
        utc = datetime.timezone.utc
        plus2 = datetime.timezone(datetime.timedelta(hours=2))
        cases = {
            'naive': (datetime.datetime(2026, 11, 27, 5, 0, 0, 123456),
                      '2026-11-27T05:00:00.123Z'),
            'aware': (datetime.datetime(2026, 11, 27, 7, 0, 0, 123999,
                                        tzinfo=plus2),
                      '2026-11-27T05:00:00.123Z'),
            'utc': (datetime.datetime(2000, 1, 1, tzinfo=utc),
                    '2000-01-01T00:00:00.000Z'),
            'rfc3339': ('2026-11-27T07:00:00.5+02:00',
                        '2026-11-27T05:00:00.500Z'),
            'epoch-int': (1, '1970-01-01T00:00:01.000Z'),
            'epoch-float': (1.001, '1970-01-01T00:00:01.001Z'),
            'epoch-big': (1796547036.999, '2026-12-06T08:50:36.999Z'),
        }
        for name, (value, _) in cases.items():
            c.track(user_id='t', event_type='dt-' + name, occurred_at=value,
                    payload={'case': name})
        before = time.time()
        c.track(user_id='t', event_type='dt-default')
        c.flush()
        for name, (_, want) in cases.items():
            got = by_type(self.upstream, 'dt-' + name)
            self.assertEqual([e['occurred_at'] for e in got], [want], name)
        got = by_type(self.upstream, 'dt-default')[0]['occurred_at']
        at = datetime.datetime.strptime(got, '%Y-%m-%dT%H:%M:%S.%fZ') \
            .replace(tzinfo=utc).timestamp()
        # Stamped by track(), not by the daemon: within the call.
        self.assertLessEqual(int(before * 1000) / 1000.0, at)
        self.assertLess(at, before + 60)

    def test_eight_threads(self):
        c = self.client()
        per, threads = 2500, 8
        start = threading.Barrier(threads)

        def worker(t):
            start.wait()
            for i in range(per):
                c.track({'user_id': 'thread-%d' % t, 'event_type': 'mt',
                         'event_id': 'py-mt-%d-%d' % (t, i),
                         'payload': {'i': i}})
        ts = [threading.Thread(target=worker, args=(t,))
              for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        c.flush(60)
        want = {'py-mt-%d-%d' % (t, i)
                for t in range(threads) for i in range(per)}
        self.assertEventsDelivered(want, timeout=5)
        self.assertEqual(c.dropped, 0)
        self.assertEqual([e for e in self.upstream.event_log
                          if e['event_type'] == 'mt'].__len__(), len(want),
                         'an event was sent twice')
        self.assertNoViolations()

    def test_event_over_64k_goes_over_the_control_socket(self):
        c = self.client()
        c.track(user_id='big', event_type='small-before', event_id='py-b-0')
        c.track(user_id='big', event_type='big', event_id='py-b-1',
                payload={'blob': 'x' * BIG})
        c.track(user_id='big', event_type='small-after', event_id='py-b-2')
        c.flush()
        ev = self.upstream.events
        self.assertEqual(len(ev['py-b-1']['payload']['blob']), BIG)
        self.assertIn('py-b-0', ev)
        self.assertIn('py-b-2', ev)
        self.assertEqual(c.dropped, 0)

    def test_close_twice_context_manager_and_track_after_close(self):
        with client_for(self.d) as c:
            c.track(user_id='cm', event_type='in-with', event_id='py-cm-1')
        # __exit__ flushed: the upstream has it now, no waiting.
        self.assertIn('py-cm-1', self.upstream.events)
        c.close()
        c.shutdown()
        c.track(user_id='cm', event_type='after-close')
        self.assertEqual(c.dropped, 1)

    def test_environment_chooses_the_sockets(self):
        env = {'SEGOPS_SOCKET': self.d.events_socket,
               'SEGOPS_CONTROL_SOCKET': self.d.control_socket}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        segops.client._key_noted = False
        try:
            with self.assertLogs('segops', 'WARNING') as logs:
                c = SegOpsClient(api_url='https://segops.example.com',
                                 api_key='sk_live_never_used_abcd',
                                 batch_size=50, flush_interval=1.0)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.assertNotIn('abcd', '\n'.join(logs.output))
        c.track(user_id='env', event_type='env', event_id='py-env-1')
        c.close()
        self.assertIn('py-env-1', self.upstream.events)

    def test_drops_reported_as_client_dropped(self):
        # The events socket is wrong, the control socket right: every
        # event is dropped, and flush tells the daemon how many.
        c = SegOpsClient(socket=os.path.join(self.tmpdir, 'none.sock'),
                         control_socket=self.d.control_socket,
                         on_error=lambda e: None)
        self.addCleanup(c.close, 1)
        before = self.d.stats()['client_dropped']
        for i in range(50):
            c.track(user_id='drop', event_type='dropped')
        # Dropped by the sender thread when it finds no daemon.
        self.upstream.wait_until(lambda: c.dropped == 50, 10)
        self.assertEqual(c.dropped, 50)
        with self.assertRaises(EventsDroppedError) as cm:
            c.flush()
        self.assertEqual(cm.exception.count, 50)
        self.assertEqual(self.d.stats()['client_dropped'] - before, 50)

    def test_async_flush_does_not_block_the_loop(self):
        # The upstream holds the next request half a second: flush waits
        # for it, and the loop keeps running meanwhile.
        self.upstream.script([{'status': 200, 'delay': 0.5}])

        async def run():
            ticks = []

            async def ticker():
                while True:
                    ticks.append(time.monotonic())
                    await asyncio.sleep(0.01)
            async with AsyncSegOpsClient(
                    socket=self.d.events_socket,
                    control_socket=self.d.control_socket) as c:
                c.track(user_id='aio', event_type='aio', event_id='py-aio-1')
                t = asyncio.ensure_future(ticker())
                t0 = time.monotonic()
                await c.flush()
                t1 = time.monotonic()
                t.cancel()
                c.track(user_id='aio', event_type='aio', event_id='py-aio-2')
            return ticks, t0, t1
        ticks, t0, t1 = asyncio.run(run())
        self.assertIn('py-aio-1', self.upstream.events)
        self.assertIn('py-aio-2', self.upstream.events)    # async with
        self.assertGreaterEqual(t1 - t0, 0.4)
        during = [x for x in ticks if t0 <= x <= t1]
        self.assertGreaterEqual(len(during), 5, 'the loop stood still')

    def test_fork_child_gets_its_own_client(self):
        c = self.client()
        c.track(user_id='parent', event_type='fork', event_id='py-f-p0')
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:    # the child: no unittest machinery here
            code = 1
            try:
                os.close(r)
                c.track(user_id='child', event_type='fork',
                        event_id='py-f-c0')
                c.flush(20)
                code = 0
            except BaseException as e:  # noqa: BLE001
                os.write(w, repr(e).encode())
            finally:
                os._exit(code)
        os.close(w)
        msg = os.read(r, 4096)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, msg)
        c.track(user_id='parent', event_type='fork', event_id='py-f-p1')
        c.flush()
        ids = [e['event_id'] for e in self.upstream.event_log
               if e['event_type'] == 'fork']
        self.assertEqual(sorted(ids), ['py-f-c0', 'py-f-p0', 'py-f-p1'],
                         'missing or sent twice')

    def test_shutdown_under_load_loses_nothing(self):
        c = client_for(self.d)
        stop = threading.Event()
        counts = [0] * 4

        def worker(t):
            i = 0
            while not stop.is_set():
                c.track({'user_id': 'load', 'event_type': 'load',
                         'event_id': 'py-l-%d-%d' % (t, i)})
                i += 1
                counts[t] = i
                if i % 200 == 0:
                    time.sleep(0.001)
        ts = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in ts:
            t.start()
        deadline = time.monotonic() + 30
        while sum(counts) < 20000 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = list(counts)      # tracked before shutdown began
        c.shutdown(60)
        stop.set()
        for t in ts:
            t.join()
        tracked = {'py-l-%d-%d' % (t, i)
                   for t in range(4) for i in range(counts[t])}
        got = {e for e in self.upstream.events if e.startswith('py-l-')}
        # Everything tracked before shutdown() went; what came during it
        # either went or was counted, and nothing else was lost.
        must = {'py-l-%d-%d' % (t, i)
                for t in range(4) for i in range(before[t])}
        self.assertFalse(must - got, 'lost: %d' % len(must - got))
        self.assertLessEqual(got, tracked)
        self.assertEqual(len(tracked) - len(got), c.dropped)


class ReviewTests(SharedCase):
    """What a review of the client found (each test failed before its
    fix): events lost without being counted, and exceptions that were
    not SegOpsErrors."""

    def test_unexpected_encoding_error_is_counted(self):
        # A nested object whose encoding fails with something other than
        # TypeError/ValueError (a dict changed by another thread during
        # the encoding raises RuntimeError): that one event is dropped
        # and counted, not lost, and flush() raises no RuntimeError.
        class Changing(dict):
            def items(self):
                raise RuntimeError('dictionary changed size during '
                                   'iteration')
        c = self.client()
        c.track(user_id='enc', event_type='enc-bad',
                payload={'ctx': Changing(a=1)})
        c.track(user_id='enc', event_type='enc-good', event_id='py-enc-1')
        with self.assertRaises(EventsDroppedError) as cm:
            c.flush()
        self.assertEqual(cm.exception.count, 1)
        self.assertEqual(c.dropped, 1)
        self.assertIn('py-enc-1', self.upstream.events)

    def test_track_racing_shutdown_is_sent_or_counted(self):
        # A thread switch between track()'s check and its append, with
        # shutdown() running in between: the event must be counted.
        c = client_for(self.d)
        c.track(user_id='race', event_type='race', event_id='py-race-0')
        q = c._q

        class Switch(type(q)):
            def append(self, item):
                c.shutdown()    # what another thread did meanwhile
                super().append(item)
        sw = Switch(q)
        c._q = sw
        c.track(user_id='race', event_type='race', event_id='py-race-1')
        self.assertIn('py-race-0', self.upstream.events)
        self.assertEqual(int('py-race-1' in self.upstream.events) +
                         c.dropped, 1, 'the event went nowhere')

    def test_user_text_escaping(self):
        # Control characters, non-BMP characters and quotes go through
        # intact; what segopsd can only reject (a lone surrogate, NUL, in
        # any string) is dropped and counted by the client instead
        # of vanishing as a rejection nobody sees.
        errors = []
        c = self.client(on_error=errors.append)
        odd = 'a\x01\x1f\x7f"\\\n\t\u2028\U0001F600 \\u0000 \\ud800'
        c.track(user_id='esc', event_type='esc-ok', event_id='py-esc-1',
                payload={odd: odd, 'n': [odd]})
        for i, bad in enumerate([{'s': 'x\ud800y'}, {'s': '\udc00'},
                                 {'\ud83d': 1}, {'s': 'nul\x00'}]):
            c.track(user_id='esc', event_type='esc-bad', payload=bad,
                    event_id='py-esc-bad-%d' % i)
        c.track(user_id='u\ud800', event_type='esc-bad')
        c.track(user_id='u', event_type='nul\x00')
        c.track(user_id='esc', event_type='esc-after', event_id='py-esc-2')
        with self.assertRaises(EventsDroppedError) as cm:
            c.flush()
        self.assertEqual(cm.exception.count, 6)
        self.assertEqual(c.dropped, 6)
        ev = self.upstream.events
        self.assertEqual(ev['py-esc-1']['payload'], {odd: odd, 'n': [odd]})
        self.assertIn('py-esc-2', ev)

    def test_user_id_limits_are_bytes(self):
        # 200 characters, 400 bytes: segopsd rejects it, so track() must
        # (limits are UTF-8 bytes, and RFC 3339 digits are ASCII).
        c = self.client()
        for kw in (dict(user_id='\u00e9' * 200, event_type='x'),
                   dict(user_id='u', event_type='\u20ac' * 50),
                   dict(user_id='u\ud800' * 40, event_type='x'),
                   dict(user_id='u', event_type='x',
                        occurred_at='\u0662\u0660\u0662\u0666-11-27T05:00:00Z')):
            with self.assertRaises(InvalidEventError, msg=repr(kw)):
                c.track(**kw)
        with self.assertRaises(InvalidEventError):
            c.identify(user_id='\u00e9' * 129 + 'x')
        c.track(user_id='\u00e9' * 128, event_type='\u20ac' * 42,
                event_id='py-bytes-1')
        c.flush()
        self.assertIn('py-bytes-1', self.upstream.events)
        self.assertEqual(c.dropped, 0)

    def test_big_event_rejected_is_counted(self):
        # Over segopsd's max_message_bytes (256 KiB here): rejected on the
        # control socket, where the client reads the rejection; it is
        # counted (and flush() raises), not only passed to on_error.
        errors = []
        c = self.client(on_error=errors.append)
        c.track(user_id='big', event_type='too-big',
                payload={'blob': 'x' * (300 * 1024)})
        c.track(user_id='big', event_type='after-too-big', event_id='py-tb-1')
        with self.assertRaises(EventsDroppedError) as cm:
            c.flush()
        self.assertEqual(cm.exception.count, 1)
        self.assertEqual(c.dropped, 1)
        self.assertIn('oversize', str(cm.exception))
        self.assertIn('py-tb-1', self.upstream.events)

    def test_multiprocessing_child_hands_over_at_exit(self):
        # A multiprocessing child ends in os._exit(): no atexit.
        import multiprocessing
        c = self.client()

        def work():
            for i in range(5000):
                c.track({'user_id': 'mp', 'event_type': 'mp',
                         'event_id': 'py-mp-%d' % i})
        p = multiprocessing.get_context('fork').Process(target=work)
        p.start()
        p.join(60)
        self.assertEqual(p.exitcode, 0)
        self.d.flush()
        self.assertEventsDelivered({'py-mp-%d' % i for i in range(5000)},
                                   timeout=20)


class FullBacklogTests(unittest.TestCase):
    """A control socket whose listen backlog is full (segopsd stalled):
    flush() ends in FlushTimeoutError, and an event that goes over the
    control socket is counted as dropped, not lost."""

    def setUp(self):
        import socket
        import tempfile
        self.dir = tempfile.mkdtemp(prefix='segops-')
        self.ctl = os.path.join(self.dir, 'segopsd.sock')
        self.ev = os.path.join(self.dir, 'events.sock')
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.ctl)
        self.listener.listen(0)
        self.dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dgram.bind(self.ev)
        self.fill = []
        for _ in range(64):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(self.ctl)
            except BlockingIOError:
                s.close()
                break
            self.fill.append(s)

    def tearDown(self):
        import shutil
        for s in self.fill + [self.listener, self.dgram]:
            s.close()
        shutil.rmtree(self.dir, True)

    def test_flush_times_out(self):
        c = SegOpsClient(socket=self.ev, control_socket=self.ctl,
                         on_error=lambda e: None)
        c.track(user_id='u', event_type='x')
        t0 = time.monotonic()
        with self.assertRaises(segops.FlushTimeoutError):
            c.flush(0.5)
        self.assertLess(time.monotonic() - t0, 3)
        self.dgram.recv(65536)

    def test_big_event_counted(self):
        errors = []
        saved = segops._datagrams.BIG_LINE_TIMEOUT
        segops._datagrams.BIG_LINE_TIMEOUT = 0.3
        self.addCleanup(setattr, segops._datagrams, 'BIG_LINE_TIMEOUT', saved)
        c = SegOpsClient(socket=self.ev, control_socket=self.ctl,
                         on_error=errors.append)
        c.track(user_id='u', event_type='big', payload={'b': 'x' * BIG})
        deadline = time.monotonic() + 10
        while c.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(c.dropped, 1, errors)


class NoDaemonTests(SegopsTestCase):

    def test_no_daemon_then_daemon(self):
        d = self.make_daemon()     # configured, not started
        errors = []
        c = client_for(d, on_error=errors.append)
        t0 = time.monotonic()
        for i in range(2000):
            c.track(user_id='nobody', event_type='lost')
        took = time.monotonic() - t0
        self.assertLess(took, 5.0, 'track() waited for the absent daemon')
        self.upstream.wait_until(lambda: c.dropped == 2000, 10)
        self.assertEqual(c.dropped, 2000)
        self.upstream.wait_until(lambda: errors, 10)
        self.assertIsInstance(errors[0], EventsDroppedError)
        self.assertIn('not running', str(errors[0]))
        with self.assertRaises(DaemonUnavailableError):
            c.flush(2)
        # The daemon comes: the same client delivers again.
        d.start()
        deadline = time.monotonic() + 10
        i = 0
        while time.monotonic() < deadline:
            c.track(user_id='late', event_type='late',
                    event_id='py-late-%d' % i)
            i += 1
            try:
                c.flush(5)
                break
            except segops.SegOpsError:
                time.sleep(0.05)
        self.assertIn('py-late-%d' % (i - 1), self.upstream.events)
        c.close()
        c.close()

    def test_atexit_hands_over_what_a_script_forgot(self):
        d = self.start_daemon()
        script = textwrap.dedent('''
            import sys
            sys.path.insert(0, %r)
            from segops import SegOpsClient
            c = SegOpsClient(socket=%r, control_socket=%r)
            for i in range(5000):
                c.track({'user_id': 'script', 'event_type': 'atexit',
                         'event_id': 'py-x-%%d' %% i})
            print(c.dropped)
            # no shutdown(): atexit hands the events over
        ''' % (PYDIR, d.events_socket, d.control_socket))
        out = subprocess.run([sys.executable, '-c', script], check=True,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.stdout.strip(), '0', out.stderr)
        self.assertEventsDelivered({'py-x-%d' % i for i in range(5000)},
                                   timeout=20)


class SessionTests(SegopsTestCase):
    api_key = PK_KEY
    upstream_options = {'require_sig': True, 'sig_secret': SECRET}

    def test_get_user_and_reset_session(self):
        d = self.start_daemon()
        current = ['alice']
        calls = []

        def get_user():
            calls.append(current[0])
            return UserContext(current[0], sign_user_id(SECRET, current[0]))
        c = client_for(d, get_user=get_user)
        self.addCleanup(c.close)
        for i in range(30):
            c.track({'user_id': 'alice', 'event_type': 'before',
                     'event_id': 'py-s-a%d' % i})
        c.flush()
        c.reset_session()
        current[0] = 'bob'
        for i in range(30):
            c.track({'user_id': 'bob', 'event_type': 'after',
                     'event_id': 'py-s-b%d' % i})
        c.flush()
        self.assertEqual(calls, ['alice', 'bob'])
        mints = self.upstream.mints
        self.assertEqual([(m['user_id'], m['status']) for m in mints],
                         [('alice', 200), ('bob', 200)])
        self.assertEqual(mints[0]['user_id_sig'],
                         sign_user_id(SECRET, 'alice'))
        # Each event went under the session of its own user.
        owner = {m['token']: m['user_id'] for m in mints}
        seen = {}
        for r in self.upstream.batch_requests:
            if r['status'] != 200:
                continue
            tok = r['headers']['authorization'][len('Bearer '):]
            for eid in r['event_ids']:
                seen[eid] = owner[tok]
        for i in range(30):
            self.assertEqual(seen.get('py-s-a%d' % i), 'alice')
            self.assertEqual(seen.get('py-s-b%d' % i), 'bob')
        self.assertEqual(c.dropped, 0)
        self.assertNoViolations()


class SignTests(unittest.TestCase):

    def test_sign_user_id_matches_the_spec(self):
        # HMAC-SHA256, lowercase hex (libsegops-sign's test vector: RFC
        # 4231 case 2).
        self.assertEqual(
            sign_user_id('Jefe', 'what do ya want for nothing?'),
            '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843')
        self.assertEqual(sign_user_id(b'Jefe', 'what do ya want for nothing?'),
                         sign_user_id('Jefe', b'what do ya want for nothing?'))
        self.assertEqual(sign_user_id(SECRET, 'u1'),
                         harness.sign_user_id(SECRET, 'u1'))


if __name__ == '__main__':
    harness.main()
