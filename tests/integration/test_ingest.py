#!/usr/bin/env python3
"""Integration tests of segopsd's local protocol (SPEC section 2).

Everything goes through the real sockets: the events datagram socket
(with the real `socat -u - UNIX-SENDTO:` line and with Python sockets)
and the control stream socket (with `socat - UNIX-CONNECT:` and raw
sockets). Each test checks exact counts: what the upstream received,
the replies with their line numbers, and the stats counters by reason.
"""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'lib'))

import harness  # noqa: E402
from harness import (nonzero, Daemon, SegopsTestCase,  # noqa: E402
                     SharedDaemonTestCase, event_id, make_event, ndjson,
                     parse_lines)

requires_socat = unittest.skipUnless(shutil.which('socat'),
                                     'socat is not installed')

UUID4_RE = re.compile(
    r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
TIME_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')

# Bad inputs every socket must reject by these reasons, keyed by a label.
DEEP = ('{"user_id":"u1","event_type":"t","payload":' + '{"a":' * 70 + '1' +
        '}' * 70 + '}').encode()
BAD_INPUTS = {
    'bad_utf8': b'{"user_id":"u1","event_type":"t","payload":{"s":"\xff\xfe"}}',
    'nul': b'{"user_id":"u1","event_type":"t","payload":{"s":"a\x00b"}}',
    'nul_escape': b'{"user_id":"u1","event_type":"t","payload":{"s":"a\\u0000b"}}',
    'too_deep': DEEP,
    'unknown_field': b'{"user_id":"u1","event_type":"t","properties":{"a":1}}',
}
REASON = {'bad_utf8': 'bad_utf8', 'nul': 'nul', 'nul_escape': 'nul',
          'too_deep': 'too_deep', 'unknown_field': 'unknown_field'}

STATS_KEYS = ('ok', 'version', 'uptime_s', 'received', 'accepted',
              'rejected', 'dropped', 'client_dropped', 'queued_events',
              'queued_bytes', 'in_flight', 'sent', 'retries', 'spooled',
              'upstream', 'session')


def exchange(d, data, timeout=15.0):
    """Send raw bytes on a fresh control connection, half-close, read
    every reply until the daemon closes; returns the parsed replies."""
    deadline = time.monotonic() + timeout
    buf = b''
    with d.connect_control(timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError('no EOF from segopsd in %.0f s; got %r'
                                   % (timeout, buf[-500:]))
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return parse_lines(buf.decode('utf-8'))


def ping_until_admitted(d, timeout=5.0):
    """Ping on fresh connections until one is admitted (a freed slot
    takes the daemon a moment to see); returns the last reply."""
    deadline = time.monotonic() + timeout
    while True:
        with d.connect_control() as c:
            c.sendall(b'{"op":"ping"}\n')
            reply = json.loads(read_line(c))
        if reply['ok'] or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


def admitted_at_once(d, n, timeout=5.0):
    """Open n control connections at once and ping on each; again until
    all n are admitted or timeout passes. Returns how many were admitted
    in the last round (all are closed again)."""
    deadline = time.monotonic() + timeout
    while True:
        socks = [d.connect_control() for _ in range(n)]
        try:
            ok = 0
            for s in socks:
                s.sendall(b'{"op":"ping"}\n')
                ok += json.loads(read_line(s))['ok'] is True
        finally:
            for s in socks:
                s.close()
        if ok == n or time.monotonic() > deadline:
            return ok
        time.sleep(0.02)


def read_line(sock, timeout=10.0):
    """Read one reply line from a connected socket (bytes up to \\n)."""
    deadline = time.monotonic() + timeout
    buf = b''
    while not buf.endswith(b'\n'):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('no reply line in %.0f s; got %r'
                               % (timeout, buf))
        sock.settimeout(left)
        c = sock.recv(1)
        if not c:
            break
        buf += c
    return buf


def errors_of(replies):
    """[(error, line)] of the error replies, in order."""
    return [(r.get('error'), r.get('line')) for r in replies
            if r.get('ok') is False]


class IngestCase(SegopsTestCase):
    """Batches leave only when full or flushed (flush_interval 60 s), so
    a flush reply counts exactly the events of the test."""

    def make_daemon(self, key=None, url=None, **overrides):
        overrides.setdefault('batch__flush_interval', '60')
        return super().make_daemon(key, url, **overrides)


class DatagramTests(IngestCase):

    def test_rejection_names_the_sending_pid(self):
        # The kernel's credentials (SO_PASSCRED) say who sent a bad
        # datagram; the old line said only which socket.
        d = self.start_daemon()
        d.send_dgram('{"user_id":"u1"}\n')          # no event_type
        d.send_dgram('{"op":"ping"}\n')             # needs a reply
        for what in ('missing_field|bad_value', 'op_not_allowed'):
            m = d.wait_for_log(r'rejected a message on the datagram socket '
                               r'from pid %d \(uid %d\): (%s)'
                               % (os.getpid(), os.getuid(), what))
            self.assertIsNotNone(m, d.stderr_text())

    @requires_socat
    def test_socat_spec_line(self):
        """The exact shell line of SPEC section 2 delivers one event."""
        d = self.start_daemon()
        d.socat_dgram('{"user_id":"u1","event_type":"deploy",'
                      '"payload":{"sha":"abc"}}\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        evs = list(self.upstream.events.values())
        self.assertEqual(len(evs), 1)
        ev = evs[0]
        self.assertEqual(ev['user_id'], 'u1')
        self.assertEqual(ev['event_type'], 'deploy')
        self.assertEqual(ev['payload'], {'sha': 'abc'})
        self.assertRegex(ev['event_id'], UUID4_RE)
        self.assertRegex(ev['occurred_at'], TIME_RE)
        st = d.stats()
        self.assertEqual((st['received'], st['accepted'], st['sent']),
                         (1, 1, 1))
        self.assertEqual(st['ingest']['datagrams'], 1)
        self.assertNoViolations()

    def test_several_messages_per_datagram_with_blank_lines(self):
        d = self.start_daemon()
        msgs = [make_event(i) for i in range(5)]
        text = ('\n' + ndjson(msgs[:2]) + '\n   \n' + ndjson(msgs[2:4]) +
                '\r\n' + json.dumps(msgs[4]))  # last one without newline
        d.send_dgram(text)
        d.send_dgram(ndjson([make_event(i) for i in range(5, 8)]))
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 8})
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(8)})
        for i in range(8):
            ev = self.upstream.events[event_id(i)]
            self.assertEqual((ev['user_id'], ev['event_type'],
                              ev['payload']), ('u1', 'test', {'i': i}))
        st = d.stats()
        self.assertEqual(st['received'], 8)
        self.assertEqual(st['accepted'], 8)
        # Every reason is there from the start, at 0 (as in dropped).
        self.assertEqual(st['rejected'], {r: 0 for r in (
            'bad_json', 'not_object', 'bad_utf8', 'nul', 'too_deep', 'bad_number',
            'duplicate_key', 'oversize', 'missing_field', 'wrong_type',
            'bad_length', 'unknown_field', 'bad_timestamp', 'bad_event_id',
            'bad_type', 'unknown_op', 'bad_value', 'op_not_allowed', 'nomem')})
        self.assertEqual(st['ingest']['datagrams'], 2)
        self.assertNoViolations()

    def test_one_bad_message_among_good_ones(self):
        d = self.start_daemon()
        lines = [json.dumps(make_event(0)), '{"user_id":"u1",',
                 json.dumps(make_event(1)),
                 '{"user_id":"u1","event_type":""}',
                 json.dumps(make_event(2))]
        d.send_dgram('\n'.join(lines) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 3})
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(3)})
        st = d.stats()
        self.assertEqual(st['received'], 5)
        self.assertEqual(st['accepted'], 3)
        self.assertEqual(nonzero(st['rejected']), {'bad_json': 1, 'bad_length': 1})
        self.assertNoViolations()

    def test_bad_inputs_rejected_good_ones_delivered(self):
        """Invalid UTF-8, a raw NUL, \\u0000, deep nesting and the
        unknown field "properties" are each rejected, in datagrams shared
        with good events that still arrive."""
        d = self.start_daemon()
        i = 0
        want = {}
        for label, bad in BAD_INPUTS.items():
            good1 = json.dumps(make_event(i)).encode()
            good2 = json.dumps(make_event(i + 1)).encode()
            d.send_dgram(good1 + b'\n' + bad + b'\n' + good2 + b'\n')
            i += 2
            want[REASON[label]] = want.get(REASON[label], 0) + 1
        self.assertEqual(d.flush(), {'ok': True, 'flushed': i})
        self.assertEqual(set(self.upstream.events),
                         {event_id(k) for k in range(i)})
        st = d.stats()
        self.assertEqual(nonzero(st['rejected']), want)
        self.assertEqual(st['accepted'], i)
        self.assertEqual(st['received'], i + len(BAD_INPUTS))
        self.assertNoViolations()

    def test_oversize_datagram(self):
        d = self.start_daemon(listen__max_message_bytes='1024',
                              batch__max_batch_bytes='65536')
        big = make_event(0, payload={'s': 'x' * 2000})
        d.send_dgram(json.dumps(big) + '\n')
        d.send_dgram(json.dumps(make_event(1)) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        self.assertEqual(set(self.upstream.events), {event_id(1)})
        st = d.stats()
        self.assertEqual(nonzero(st['rejected']), {'oversize': 1})
        # The message was too big, not the datagram.
        self.assertEqual(st['ingest']['datagrams_oversize'], 0)
        self.assertEqual((st['received'], st['accepted']), (2, 1))

    def test_datagram_over_max_datagram_bytes(self):
        """Three 60 KB messages (each under max_message_bytes) in one
        datagram over max_datagram_bytes: the datagram is rejected whole,
        the next one is taken."""
        d = self.start_daemon(listen__max_message_bytes='64K',
                              listen__max_datagram_bytes='128K',
                              batch__max_batch_bytes='1M')
        lines = [json.dumps(make_event(i, payload={'s': 'x' * 60000}))
                 for i in range(3)]
        d.send_dgram('\n'.join(lines) + '\n')
        d.send_dgram(json.dumps(make_event(9)) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        self.assertEqual(set(self.upstream.events), {event_id(9)})
        st = d.stats()
        self.assertEqual(nonzero(st['rejected']), {'oversize': 1})
        self.assertEqual(st['ingest']['datagrams_oversize'], 1)

    def test_datagram_with_several_messages_over_one_message_limit(self):
        """max_message_bytes applies to each message, not the datagram."""
        d = self.start_daemon(listen__max_message_bytes='1024',
                              batch__max_batch_bytes='65536')
        lines = [json.dumps(make_event(i, payload={'s': 'x' * 500}))
                 for i in range(3)]
        d.send_dgram('\n'.join(lines) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 3})
        self.assertEqual(set(self.upstream.events), {event_id(i) for i in range(3)})

    def test_message_of_exactly_max_bytes_in_a_datagram(self):
        """max_message_bytes applies to each message (SPEC section 2): a
        message of exactly the limit, newline-terminated as the protocol
        says, is accepted; one byte more is rejected."""
        limit = 1024
        d = self.start_daemon(listen__max_message_bytes=str(limit),
                              batch__max_batch_bytes='65536')

        def sized(i, n):
            ev = make_event(i, payload={'s': ''})
            pad = n - len(json.dumps(ev))
            ev['payload']['s'] = 'x' * pad
            raw = json.dumps(ev)
            self.assertEqual(len(raw), n)
            return raw

        d.send_dgram(sized(0, limit) + '\n')
        d.send_dgram(sized(1, limit))
        d.send_dgram(sized(2, limit + 1) + '\n')
        self.assertEqual(d.flush()['ok'], True)
        st = d.stats()
        self.assertEqual(nonzero(st['rejected']), {'oversize': 1},
                         'a message of exactly max_message_bytes followed '
                         'by its newline must be accepted')
        self.assertEqual(set(self.upstream.events),
                         {event_id(0), event_id(1)})

    def test_ops_on_the_datagram_socket(self):
        """set_user and reset_session are taken silently; ops that need a
        reply are rejected as op_not_allowed."""
        d = self.start_daemon()
        d.send_dgram('{"op":"set_user","user_id":"u9"}\n'
                     '{"op":"reset_session"}\n'
                     '{"op":"ping"}\n'
                     '{"op":"stats"}\n'
                     '{"op":"flush"}\n' + json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        st = d.stats()
        self.assertEqual(nonzero(st['rejected']), {'op_not_allowed': 3})
        self.assertEqual(st['accepted'], 1)
        self.assertEqual(st['received'], 4)
        self.assertEqual(set(self.upstream.events), {event_id(0)})


class StreamTests(IngestCase):

    @requires_socat
    def test_socat_bulk_ndjson(self):
        n = 2000
        d = self.start_daemon(batch__batch_size='500')
        text = ndjson([make_event(i, user='u%d' % (i % 7)) for i in range(n)])
        out = d.socat_stream(text + '{"op":"ping"}\n', timeout=30)
        replies = parse_lines(out)
        self.assertEqual(replies, [{'ok': True, 'version': replies[0].get(
            'version')}], 'only the ping is answered')
        self.assertRegex(replies[0]['version'], r'^\d+\.\d+\.\d+')
        st = d.stats()
        self.assertEqual((st['received'], st['accepted']), (n, n))
        self.assertEqual(d.flush(timeout_ms=20000)['ok'], True)
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(n)})
        self.assertEqual(len(self.upstream.event_log), n)
        self.assertEqual(self.upstream.events[event_id(1234)]['user_id'],
                         'u%d' % (1234 % 7))
        self.assertEqual(d.stats()['sent'], n)
        self.assertNoViolations()

    def test_oversize_line_connection_carries_on(self):
        d = self.start_daemon(listen__max_message_bytes='1024',
                              batch__max_batch_bytes='65536')
        big = json.dumps(make_event(99, payload={'s': 'x' * 50000}))
        data = (ndjson([make_event(0)])          # 1
                + big + '\n'                     # 2 oversize
                + ndjson([make_event(1)])        # 3
                + '{bad\n'                       # 4
                + big + '\n'                     # 5 oversize
                + ndjson([make_event(2)])        # 6
                + '{"op":"ping"}\n')             # 7
        replies = exchange(d, data.encode())
        self.assertEqual(errors_of(replies), [('oversize', 2),
                                              ('bad_json', 4),
                                              ('oversize', 5)])
        self.assertEqual(replies[-1].get('ok'), True)
        self.assertEqual(len(replies), 4)
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 3})
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(3)})
        st = d.stats()
        self.assertEqual(nonzero(st['rejected']), {'oversize': 2, 'bad_json': 1})

    def test_oversize_last_line_without_newline(self):
        d = self.start_daemon(listen__max_message_bytes='1024',
                              batch__max_batch_bytes='65536')
        data = ndjson([make_event(0)]) + json.dumps(
            make_event(1, payload={'s': 'y' * 3000}))
        self.assertEqual(errors_of(exchange(d, data.encode())),
                         [('oversize', 2)])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})

    def _exactly_max_bytes(self, eol):
        limit = 1024
        d = self.start_daemon(listen__max_message_bytes=str(limit),
                              batch__max_batch_bytes='65536')
        lines = []
        for i, n in enumerate((limit, limit + 1, limit)):
            ev = make_event(i, payload={'s': ''})
            ev['payload']['s'] = 'x' * (n - len(json.dumps(ev)))
            lines.append(json.dumps(ev))
            self.assertEqual(len(lines[-1]), n)
        self.assertEqual(errors_of(exchange(d, (eol.join(lines) + eol)
                                            .encode())), [('oversize', 2)])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 2})
        self.assertEqual(set(self.upstream.events), {event_id(0),
                                                     event_id(2)})
        # The same over datagrams.
        for i, line in enumerate(lines):
            d.send_dgram(line.replace(event_id(i), event_id(10 + i)) + eol)
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 2})
        self.assertIn(event_id(10), self.upstream.events)
        self.assertIn(event_id(12), self.upstream.events)
        self.assertNotIn(event_id(11), self.upstream.events)

    def test_line_of_exactly_max_bytes(self):
        self._exactly_max_bytes('\n')

    def test_line_of_exactly_max_bytes_with_crlf(self):
        # The \r of a CRLF line end is not part of the message.
        self._exactly_max_bytes('\r\n')

    def test_ops(self):
        d = self.start_daemon(batch__flush_interval='60')
        replies = d.control([{'op': 'ping'}, {'op': 'stats'},
                             make_event(0), make_event(1),
                             {'op': 'flush', 'timeout_ms': 5000},
                             {'op': 'bogus'}, {'op': 'ping'}])
        self.assertEqual(len(replies), 5)
        ping, st, fl, bogus, ping2 = replies
        self.assertEqual(set(ping), {'ok', 'version'})
        self.assertTrue(ping['ok'])
        for k in STATS_KEYS:
            self.assertIn(k, st)
        for k in ('state', 'last_status', 'last_error'):
            self.assertIn(k, st['upstream'])
        for k in ('memory_full', 'upstream_rejected', 'too_large',
                  'shutdown'):
            self.assertEqual(st['dropped'][k], 0)
        self.assertEqual((st['received'], st['accepted']), (0, 0))
        self.assertEqual(fl, {'ok': True, 'flushed': 2})
        self.assertEqual(bogus['error'], 'unknown_op')
        self.assertEqual(bogus['line'], 6)
        self.assertEqual(ping2, ping)
        self.assertEqual(set(self.upstream.events), {event_id(0),
                                                     event_id(1)})

    def test_counter_relations(self):
        d = self.start_daemon()
        good = [make_event(i) for i in range(10)]
        bad = ['{', '[]', '{"user_id":"u1"}', '{"op":"x"}',
               '{"user_id":"u1","event_type":"t","properties":{}}']
        exchange(d, (ndjson(good[:5]) + ndjson(bad) + ndjson(good[5:]))
                 .encode())
        d.send_dgram(ndjson([make_event(i) for i in range(10, 13)] +
                            ['{"nope": 1}', 'null']))
        self.assertEqual(d.flush()['ok'], True)
        st = d.stats()
        self.assertEqual(st['accepted'], 13)
        self.assertEqual(sum(st['rejected'].values()), 7)
        self.assertEqual(st['received'],
                         st['accepted'] + sum(st['rejected'].values()))
        self.assertEqual(st['sent'], 13)
        self.assertEqual(st['queued_events'], 0)
        self.assertEqual(len(self.upstream.events), 13)

    def test_events_then_ping(self):
        """The ping reply comes only once every earlier line on that
        connection is accepted: no waiting, no polling."""
        d = self.start_daemon(batch__flush_interval='60',
                              batch__batch_size='500')
        n = 1500
        with d.connect_control() as s:
            s.sendall(ndjson([make_event(i) for i in range(n)] +
                             [{'op': 'ping'}]).encode())
            line = read_line(s)
            self.assertEqual(json.loads(line)['ok'], True)
            # Still connected, not half-closed: the ordering alone holds.
            st = d.stats()
            self.assertEqual(st['accepted'], n)
            self.assertEqual(st['received'], n)

    def test_max_connections(self):
        d = self.start_daemon(listen__max_connections='2',
                              listen__reserved_connections='0')
        a = d.connect_control()
        b = d.connect_control()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        for s in (a, b):
            s.sendall(b'{"op":"ping"}\n')
            self.assertEqual(json.loads(read_line(s))['ok'], True)
        with d.connect_control() as c:
            reply = json.loads(read_line(c))
            self.assertEqual(reply['ok'], False)
            self.assertEqual(reply['error'], 'too_many_connections')
            c.settimeout(5)
            self.assertEqual(c.recv(100), b'', 'refused connection closed')
        # The two admitted ones still work.
        a.sendall(json.dumps(make_event(0)).encode() + b'\n{"op":"ping"}\n')
        self.assertEqual(json.loads(read_line(a))['ok'], True)
        a.close()
        # A slot is free again once one closes (the daemon needs a
        # moment to see the close).
        self.assertEqual(ping_until_admitted(d)['ok'], True)
        b.close()
        st = d.stats()
        self.assertGreaterEqual(st['ingest']['connections_refused'], 1)

    def test_max_connections_per_uid(self):
        """One uid at its cap is refused; another uid still gets in."""
        # (no reserve: this test runs as root, who could use it)
        d = self.start_daemon(listen__max_connections_per_uid='2',
                              listen__reserved_connections='0',
                              listen__socket_mode='0666')
        mine = [d.connect_control(), d.connect_control()]
        for s in mine:
            self.addCleanup(s.close)
            s.sendall(b'{"op":"ping"}\n')
            self.assertEqual(json.loads(read_line(s))['ok'], True)
        with d.connect_control() as c:
            reply = json.loads(read_line(c))
            self.assertEqual(reply['error'], 'too_many_connections')
            self.assertIn('max_connections_per_uid', reply['detail'])
        # (stats on a connection already open: a new one would be refused)
        mine[1].sendall(b'{"op":"stats"}\n')
        st = json.loads(read_line(mine[1]))
        self.assertEqual(st['ingest']['connections_refused_uid'], 1)
        self.assertEqual(st['ingest']['connections_refused'], 0)
        if os.geteuid() != 0:
            self.skipTest('another uid needs root to switch to')
        # Another user, at the same moment, is served.
        os.chmod(self.tmpdir, 0o711)
        script = ('import json, os, socket, sys\n'
                  'os.setgid(65534); os.setuid(65534)\n'
                  's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n'
                  's.settimeout(10); s.connect(sys.argv[1])\n'
                  's.sendall(b\'{"op":"ping"}\\n\')\n'
                  'print(s.makefile().readline().strip())\n')
        p = subprocess.run([sys.executable, '-c', script, d.control_socket],
                           capture_output=True, timeout=20, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)['ok'], True)
        # And a slot of this uid frees when one of its connections goes.
        mine[0].close()
        self.assertEqual(ping_until_admitted(d)['ok'], True)

    def test_many_flush_lines_at_once(self):
        """60,000 flush ops in one burst, nothing held: each is answered
        in turn, without recursion (a stack overflow once)."""
        d = self.start_daemon(listen__max_message_bytes='1M',
                              listen__max_reply_bytes='64M')
        n = 60000
        s = d.connect_control()
        self.addCleanup(s.close)
        s.settimeout(30)
        threading.Thread(target=lambda: (s.sendall(b'{"op":"flush"}\n' * n),
                                         s.shutdown(socket.SHUT_WR)),
                         daemon=True).start()
        data = b''
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        replies = data.splitlines()
        self.assertEqual(len(replies), n)
        self.assertEqual(json.loads(replies[-1]), {'ok': True, 'flushed': 0})
        self.assertTrue(d.running())

    def test_flush_with_zero_timeout_leaves_the_connection_usable(self):
        # Events pending (the upstream holds its answer): a flush with
        # timeout_ms 0 answers at once, and the connection goes on with
        # the next line and is released when the client leaves. It used
        # to stay wedged for good, holding its slot, so a few of them
        # took the whole control socket away.
        d = self.start_daemon(listen__max_connections='3',
                              listen__reserved_connections='0')
        held = threading.Event()
        self.addCleanup(held.set)
        self.upstream.set_default(200, hold=held)
        for i in range(5):
            replies = d.control([make_event(i),
                                 {'op': 'flush', 'timeout_ms': 0},
                                 {'op': 'ping'}], expect=2, timeout=5)
            self.assertFalse(replies[0]['ok'], replies)
            self.assertTrue(replies[0]['error'].startswith('timeout'), replies)
            self.assertEqual(replies[1]['ok'], True)
            self.assertIn('version', replies[1])
        # Every one of them was released: max_connections of them at once
        # are admitted (a close takes the daemon a moment to see).
        # (ingest.connections counts connections accepted since start,
        # not open ones, so it cannot say this.)
        self.assertEqual(admitted_at_once(d, 3), 3)
        st = d.stats()
        self.assertEqual(st['ingest']['connections_refused'], 0)
        self.upstream.set_default(None)
        held.set()
        self.assertEventsDelivered([event_id(i) for i in range(5)],
                                   timeout=15)

    def test_client_that_never_reads_is_disconnected(self):
        # Reading pauses at max_reply_bytes; with no reply read for
        # reply_timeout, the connection is cut off.
        d = self.start_daemon(listen__max_reply_bytes='4096',
                              listen__reply_timeout='0.5')
        bad_line = b'{"user_id":"u1","event_type":1}\n'
        n = 20000   # ~2 MB of replies, far past every socket buffer
        s = d.connect_control()
        self.addCleanup(s.close)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        payload = bad_line * n
        err = []

        def writer():
            try:
                s.settimeout(20)
                s.sendall(payload)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        st = d.wait_for_stats(
            lambda x: x['ingest']['connections_slow_closed'] >= 1,
            timeout=20)
        self.assertEqual(st['ingest']['connections_slow_closed'], 1)
        self.assertGreaterEqual(st['ingest']['connections_paused'], 1)
        t.join(timeout=25)
        self.assertFalse(t.is_alive(), 'sender still blocked')
        # The daemon keeps serving others.
        self.assertEqual(d.ping()['ok'], True)
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        self.assertIn(event_id(0), self.upstream.events)
        # It was cut off: reading what is left ends in EOF or a reset,
        # never in all n replies.
        got = 0
        s.settimeout(5)
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                got += c.count(b'\n')
        except OSError:
            pass
        self.assertLess(got, n)

    def test_idle_connection_is_closed(self):
        d = self.start_daemon(listen__idle_timeout='0.5')
        with d.connect_control() as s:
            s.sendall(b'{"op":"ping"}\n')
            self.assertIn(b'"ok":true', read_line(s))
            t0 = time.monotonic()
            s.settimeout(5)
            self.assertEqual(s.recv(100), b'')
            self.assertLess(time.monotonic() - t0, 2.0)
        st = d.stats()
        self.assertEqual(st['ingest']['connections_idle_closed'], 1)


class StreamReplyTests(SharedDaemonTestCase):
    """Replies on the stream socket, from one daemon: each test looks at
    its own replies and flushes its own events (the mock is reset before
    each)."""

    daemon_config = {'batch__flush_interval': '60'}

    @requires_socat
    def test_socat_stats_line(self):
        """`echo '{"op":"stats"}' | socat - UNIX-CONNECT:...` answers."""
        d = self.d
        out = d.socat_stream('{"op":"stats"}\n')
        replies = parse_lines(out)
        self.assertEqual(len(replies), 1)
        for k in STATS_KEYS:
            self.assertIn(k, replies[0])

    def test_error_replies_and_line_numbers(self):
        """Blank lines count; \\r\\n ends lines; the reply names the line
        and a detail; a last line without newline is handled."""
        d = self.d
        data = ('\n'                                          # 1 blank
                + json.dumps(make_event(0)) + '\r\n'          # 2 ok
                + '{"user_id":"u1"}\n'                        # 3 missing
                + '   \n'                                     # 4 blank
                + '[1,2]\r\n'                                 # 5 not_object
                + '  ' + json.dumps(make_event(1)) + '  \n'   # 6 ok
                + '{"user_id":"u1","event_type":"t","event_id":"a b"}\n'
                + '{"user_id":5,"event_type":"t"}\n'          # 8 wrong_type
                + '{"user_id":"u1","event_type":"t","occurred_at":"yesterday"}\n'
                + json.dumps(make_event(2)) + '\n'            # 10 ok
                + '{"op":"nope"}\n'                           # 11 unknown_op
                + '{"type":"alias","user_id":"u1"}\n'         # 12 bad_type
                + '{"user_id":"u1","event_type":"t","a":1,"a":2}\n'
                + '{"nope')                                   # 14 no newline
        replies = exchange(d, data.encode())
        self.assertEqual(errors_of(replies), [
            ('missing_field', 3), ('not_object', 5), ('bad_event_id', 7),
            ('wrong_type', 8), ('bad_timestamp', 9), ('unknown_op', 11),
            ('bad_type', 12), ('duplicate_key', 13), ('bad_json', 14)])
        for r in replies:
            self.assertEqual(set(r), {'ok', 'error', 'detail', 'line'})
            self.assertIsInstance(r['detail'], str)
            self.assertTrue(r['detail'])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 3})
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(3)})

    def test_last_line_without_newline_is_accepted(self):
        d = self.d
        data = ndjson([make_event(0)]) + json.dumps(make_event(1))
        self.assertEqual(exchange(d, data.encode()), [])
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 2})
        self.assertEqual(set(self.upstream.events), {event_id(0),
                                                     event_id(1)})

    def test_bad_inputs_on_the_stream(self):
        d = self.d
        data = b''
        want = []
        line = 0
        n_good = 0
        for label, bad in BAD_INPUTS.items():
            data += json.dumps(make_event(n_good)).encode() + b'\n'
            n_good += 1
            line += 1
            data += bad + b'\n'
            line += 1
            want.append((REASON[label], line))
        data += json.dumps(make_event(n_good)).encode() + b'\n'
        n_good += 1
        self.assertEqual(errors_of(exchange(d, data)), want)
        self.assertEqual(d.flush(), {'ok': True, 'flushed': n_good})
        self.assertEqual(set(self.upstream.events),
                         {event_id(i) for i in range(n_good)})

    def test_control_connection_closed_after_half_close(self):
        d = self.d
        with d.connect_control() as s:
            s.sendall(b'{"op":"ping"}\n{"op":"ping"}\n')
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            buf = b''
            while True:
                c = s.recv(4096)
                if not c:
                    break
                buf += c
        self.assertEqual(len(parse_lines(buf.decode())), 2)


class SocketFileTests(IngestCase):

    def test_socket_mode(self):
        d = self.start_daemon(listen__socket_mode='0640')
        for path in (d.events_socket, d.control_socket):
            st = os.stat(path)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o640, path)

    def test_socket_mode_ignores_umask(self):
        d = self.make_daemon(listen__socket_mode='0666')
        old = os.umask(0o077)
        try:
            d.start()
        finally:
            os.umask(old)
        for path in (d.events_socket, d.control_socket):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o666)

    def test_stale_socket_files_are_replaced(self):
        d = self.make_daemon()
        for path, kind in ((d.events_socket, socket.SOCK_DGRAM),
                           (d.control_socket, socket.SOCK_STREAM)):
            s = socket.socket(socket.AF_UNIX, kind)
            s.bind(path)
            s.close()           # leaves the file, nobody listening
            self.assertTrue(os.path.exists(path))
        d.start()
        d.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(d.flush(), {'ok': True, 'flushed': 1})
        self.assertIn(event_id(0), self.upstream.events)

    def test_short_kernel_datagram_queue_is_reported(self):
        # The kernel's own default is 10 (no systemd here to raise it to
        # 512); either way the log must match what the machine has.
        with open('/proc/sys/net/unix/max_dgram_qlen') as f:
            qlen = int(f.read())
        d = self.start_daemon()
        self.assertEqual(d.ping()['ok'], True)
        warned = re.search(r'warning: net\.unix\.max_dgram_qlen is (\d+): .*'
                           r'queues at most (\d+) datagrams.*systemd sets 512',
                           d.stderr_text())
        if qlen < 64:
            self.assertIsNotNone(warned, d.stderr_text())
            self.assertEqual(int(warned.group(1)), qlen)
            self.assertEqual(int(warned.group(2)), qlen + 1)
        else:
            self.assertIsNone(warned)

    def test_second_instance_refuses_to_start(self):
        first = self.start_daemon()
        second = Daemon(first.tmpdir, self.upstream.url)
        # Same config, same socket paths; own log files.
        second.stdout_path += '.2'
        second.stderr_path += '.2'
        self.addCleanup(second.cleanup)
        second.start(wait=False)
        try:
            rc = second.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.fail('second segopsd kept running on the same sockets')
        self.assertNotEqual(rc, 0)
        err = second.stderr_text()
        self.assertRegex(err, r'already listening|in use')
        self.assertTrue(first.events_socket in err or
                        first.control_socket in err, err)
        # The first one still owns both sockets.
        self.assertTrue(first.running())
        self.assertEqual(first.ping()['ok'], True)
        first.send_dgram(json.dumps(make_event(0)) + '\n')
        self.assertEqual(first.flush(), {'ok': True, 'flushed': 1})
        self.assertIn(event_id(0), self.upstream.events)


if __name__ == '__main__':
    harness.main()
