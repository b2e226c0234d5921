#!/usr/bin/env python3
"""Self-test of the mock upstream and TLS helpers, without segopsd.

Integration tests trust MockUpstream to flag every contract violation;
this proves it does: well-formed requests pass, each kind of malformed
request is caught, scripted failures, sessions, signatures and TLS
verification behave as SPEC section 4 describes.
"""

import gzip
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mockupstream import MockUpstream, sign_user_id  # noqa: E402
import tlsca  # noqa: E402

UA = 'segopsd/0.1.0'
SK = 'sk_test_selftest_key_1234'
PK = 'pk_test_selftest_key_5678'


def make_batch(n=2, batch_id=None, start=0, **event_overrides):
    events = []
    for i in range(start, start + n):
        ev = {'event_id': 'e-%d' % i, 'user_id': 'u1',
              'event_type': 'signup',
              'occurred_at': '2026-11-27T05:00:00.123Z',
              'payload': {'i': i}}
        ev.update(event_overrides)
        events.append(ev)
    return {'batch_id': batch_id or str(uuid.uuid4()),
            'sent_at': '2026-11-27T05:00:01.000Z', 'events': events}


def batch_headers(batch, auth=SK, gz=False, **extra):
    h = {'Content-Type': 'application/json', 'User-Agent': UA,
         'Authorization': 'Bearer ' + auth,
         'Idempotency-Key': batch['batch_id']}
    if gz:
        h['Content-Encoding'] = 'gzip'
    h.update(extra)
    return {k: v for k, v in h.items() if v is not None}


class Client:
    """A keep-alive http.client connection to the mock."""

    def __init__(self, mock, context=None):
        host, port = '127.0.0.1', mock.port
        if context is not None:
            self.conn = http.client.HTTPSConnection(host, port, timeout=5,
                                                    context=context)
        else:
            self.conn = http.client.HTTPConnection(host, port, timeout=5)

    def post(self, path, body, headers):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.conn.request('POST', path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, resp, json.loads(data) if data else None

    def send_batch(self, batch, raw=None, gz=False, **hdrs):
        body = raw if raw is not None else json.dumps(batch).encode()
        if gz:
            body = gzip.compress(body)
        return self.post('/api/events/batch/', body,
                         batch_headers(batch, gz=gz, **hdrs))

    def mint(self, doc, key=PK, **hdrs):
        h = {'Content-Type': 'application/json', 'User-Agent': UA,
             'Authorization': 'Bearer ' + key}
        h.update(hdrs)
        return self.post('/api/auth/session/', doc, h)

    def close(self):
        self.conn.close()


class MockTestCase(unittest.TestCase):
    mock_options = {}

    def setUp(self):
        opts = {'api_key': SK}
        opts.update(self.mock_options)
        self.mock = MockUpstream(**opts).start()
        self.addCleanup(self.mock.stop)
        self.client = Client(self.mock)
        self.addCleanup(self.client.close)

    def assertViolation(self, fragment):
        v = self.mock.violations
        self.assertTrue(any(fragment in x for x in v),
                        'no violation mentioning %r in %r' % (fragment, v))


class TestEvents(MockTestCase):
    def test_good_batch_keepalive_and_dedupe(self):
        b = make_batch(3)
        status, _, body = self.client.send_batch(b)
        self.assertEqual(status, 200)
        self.assertEqual(body, {'accepted': 3, 'duplicates': 0})
        sock = self.client.conn.sock
        # A retry of the same batch: identical body, same connection.
        status, _, body = self.client.send_batch(b)
        self.assertEqual(body, {'accepted': 0, 'duplicates': 3})
        self.assertIs(self.client.conn.sock, sock, 'keep-alive broken')
        # A new batch overlapping one event.
        status, _, body = self.client.send_batch(make_batch(2, start=2))
        self.assertEqual(body, {'accepted': 1, 'duplicates': 1})
        self.assertEqual(sorted(self.mock.events),
                         ['e-0', 'e-1', 'e-2', 'e-3'])
        self.assertEqual(len(self.mock.event_log), 8)
        self.assertTrue(self.mock.wait_for_events(4, timeout=1))
        reqs = self.mock.batch_requests
        self.assertEqual([r['status'] for r in reqs], [200, 200, 200])
        self.assertEqual(reqs[0]['batch_id'], b['batch_id'])
        self.assertEqual(reqs[0]['n_events'], 3)
        self.assertEqual(reqs[0]['headers']['user-agent'], UA)
        self.assertEqual(self.mock.violations, [])

    def test_missing_header(self):
        b = make_batch()
        status, _, body = self.client.send_batch(b, **{'Idempotency-Key':
                                                       None})
        self.assertEqual(status, 400)
        self.assertIn('Idempotency-Key', body['error'])
        self.assertViolation('no Idempotency-Key')
        self.assertEqual(self.mock.events, {})

    def test_header_mismatches(self):
        b = make_batch()
        self.client.send_batch(b, **{'Idempotency-Key': str(uuid.uuid4())})
        self.assertViolation('!= batch_id')
        self.client.send_batch(b, **{'User-Agent': 'curl/8.0'})
        self.assertViolation('User-Agent')
        self.client.send_batch(b, **{'Content-Type': 'text/plain'})
        self.assertViolation('Content-Type')
        self.client.send_batch(b, **{'Authorization': 'Basic abc'})
        self.assertViolation('Bearer')
        status, _, _ = self.client.send_batch(b, auth='sk_wrong')
        self.assertEqual(status, 401)
        self.assertViolation('wrong key')

    def test_body_shape(self):
        cases = [
            (make_batch(properties={}), 'keys'),
            (make_batch(occurred_at='2026-11-27T05:00:00Z'), 'occurred_at'),
            (make_batch(occurred_at='2026-02-30T05:00:00.000Z'),
             'real date'),
            (make_batch(event_id='bad id!'), 'event_id'),
            (make_batch(user_id=''), 'user_id'),
            (make_batch(event_type='x' * 129), 'event_type'),
            (make_batch(payload=[]), 'payload'),
            (make_batch(batch_id=str(uuid.uuid4()).upper()), 'batch_id'),
            (make_batch(batch_id=str(uuid.uuid1())), 'batch_id'),
            (make_batch(0), 'events must be'),
            (make_batch(501), 'events must be'),
        ]
        for batch, fragment in cases:
            with self.subTest(fragment=fragment):
                status, _, _ = self.client.send_batch(batch)
                self.assertEqual(status, 400)
                self.assertViolation(fragment)
        b = make_batch(1)
        b['events'].append(dict(b['events'][0]))
        self.client.send_batch(b)
        self.assertViolation('twice in one batch')
        raw = b'{"batch_id":"x","batch_id":"y"}'
        self.client.send_batch(make_batch(), raw=raw)
        self.assertViolation('duplicate key')
        self.assertEqual(self.mock.events, {})

    def test_too_large(self):
        b = make_batch(1, payload={'blob': 'x' * (1024 * 1024)})
        status, _, _ = self.client.send_batch(b)
        self.assertEqual(status, 400)
        self.assertViolation('over 1048576')

    def test_retry_with_different_body(self):
        b = make_batch(2)
        self.assertEqual(self.client.send_batch(b)[0], 200)
        b['sent_at'] = '2026-11-27T05:00:09.000Z'
        status, _, _ = self.client.send_batch(b)
        self.assertEqual(status, 400)
        self.assertViolation('resent with a different body')

    def test_unknown_path_and_method(self):
        status, _, _ = self.client.post('/api/events/batch', b'{}', {})
        self.assertEqual(status, 404)
        self.assertViolation('unknown endpoint')
        self.client.conn.request('GET', '/api/events/batch/')
        resp = self.client.conn.getresponse()
        resp.read()
        self.assertEqual(resp.status, 400)
        self.assertViolation('method GET')

    def test_chunked_rejected(self):
        # The whole request goes out in one write: the mock may answer
        # and close as soon as it sees the header, and a client that is
        # still sending would get EPIPE instead of the answer.
        b = make_batch()
        body = json.dumps(b).encode()
        head = ''.join('%s: %s\r\n' % kv for kv in batch_headers(b).items())
        req = (('POST /api/events/batch/ HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                'Transfer-Encoding: chunked\r\n%s\r\n' % head).encode() +
               b'%x\r\n%s\r\n0\r\n\r\n' % (len(body), body))
        with socket.create_connection(('127.0.0.1', self.mock.port), 5) as sk:
            sk.sendall(req)
            resp = http.client.HTTPResponse(sk)
            resp.begin()
            resp.read()
        self.assertEqual(resp.status, 400)
        self.assertViolation('Transfer-Encoding')

    def test_script_retry_after_then_200(self):
        self.mock.script([{'status': 429, 'headers': {'Retry-After': '2'}},
                          503])
        b = make_batch()
        status, resp, _ = self.client.send_batch(b)
        self.assertEqual(status, 429)
        self.assertEqual(resp.getheader('Retry-After'), '2')
        self.assertEqual(self.client.send_batch(b)[0], 503)
        self.assertEqual(self.mock.events, {})
        self.assertEqual(self.client.send_batch(b)[0], 200)
        self.assertEqual(len(self.mock.events), 2)
        self.assertEqual([r['status'] for r in self.mock.batch_requests],
                         [429, 503, 200])
        self.assertEqual(self.mock.violations, [])

    def test_script_partial_and_drop(self):
        self.mock.script([{'status': 200, 'body': {'accepted': 1,
                                                   'duplicates': 0}},
                          {'drop': True}])
        status, _, body = self.client.send_batch(make_batch(2))
        self.assertEqual(body, {'accepted': 1, 'duplicates': 0})
        with self.assertRaises((http.client.RemoteDisconnected,
                                ConnectionError)):
            self.client.send_batch(make_batch(1, start=5))
        self.assertEqual(self.mock.violations, [])

    def test_drop_after_store(self):
        # The upstream commits the batch, then the connection is lost:
        # the events are stored, the client sees no answer, and its
        # resend of the same batch finds them all duplicates.
        self.mock.script([{'drop': True, 'store': True}])
        b = make_batch(3)
        with self.assertRaises((http.client.RemoteDisconnected,
                                ConnectionError)):
            self.client.send_batch(b)
        self.assertEqual(sorted(self.mock.events), ['e-0', 'e-1', 'e-2'])
        self.assertEqual([(r['status'], r['stored'])
                          for r in self.mock.batch_requests],
                         [('dropped', True)])
        self.client.close()
        self.client = Client(self.mock)
        self.assertEqual(self.client.send_batch(b)[2],
                         {'accepted': 0, 'duplicates': 3})
        self.assertEqual(self.mock.violations, [])

    def test_too_large_over(self):
        self.mock.too_large_over(events=2)
        self.mock.script([503])
        self.assertEqual(self.client.send_batch(make_batch(3))[0], 413)
        self.assertEqual(self.mock.events, {})
        # The script item is still there for the next request in bounds.
        self.assertEqual(self.client.send_batch(make_batch(2))[0], 503)
        self.mock.too_large_over(body_bytes=100)
        self.assertEqual(self.client.send_batch(make_batch(1))[0], 413)
        self.mock.too_large_over()
        self.assertEqual(self.client.send_batch(make_batch(3))[0], 200)
        self.assertEqual([r['status'] for r in self.mock.batch_requests],
                         [413, 503, 413, 200])
        self.assertEqual(self.mock.violations, [])

    def test_set_default(self):
        self.mock.set_default(500)
        b = make_batch()
        for _ in range(3):
            self.assertEqual(self.client.send_batch(b)[0], 500)
        self.mock.set_default(None)
        self.assertEqual(self.client.send_batch(b)[0], 200)
        self.assertEqual(self.mock.violations, [])

    def test_hold_answers_when_the_test_says(self):
        gate = threading.Event()
        self.mock.script([{'status': 503, 'hold': gate}])
        got = []
        t = threading.Thread(target=lambda: got.append(
            self.client.send_batch(make_batch(1))[0]))
        t.start()
        self.assertTrue(self.mock.wait_until(lambda: self.mock.held() == 1,
                                             timeout=5))
        t.join(0.3)
        self.assertTrue(t.is_alive(), 'answered before the hold was set')
        self.assertEqual(self.mock.batch_requests, [])
        released = time.monotonic()
        gate.set()
        t.join(5)
        self.assertEqual(self.mock.held(), 0)
        self.assertEqual(got, [503])
        self.assertGreaterEqual(self.mock.batch_requests[0]['done'],
                                released)
        self.assertEqual(self.mock.violations, [])

    def test_stop_releases_a_hold(self):
        gate = threading.Event()
        self.mock.set_default(200, hold=gate)
        errors = []

        def send():
            try:
                self.client.send_batch(make_batch(1))
            except (OSError, http.client.HTTPException) as e:
                errors.append(e)
        t = threading.Thread(target=send)
        t.start()
        t.join(0.3)
        self.assertTrue(t.is_alive())
        self.mock.stop()
        t.join(5)
        self.assertFalse(t.is_alive(), 'stop() left a request held')
        self.assertTrue(gate.is_set())

    def test_stop_and_restart_same_port(self):
        port = self.mock.port
        self.assertEqual(self.client.send_batch(make_batch(1))[0], 200)
        self.mock.stop()
        with self.assertRaises(OSError):
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
        self.mock.start()
        self.assertEqual(self.mock.port, port)
        fresh = Client(self.mock)
        self.addCleanup(fresh.close)
        self.assertEqual(fresh.send_batch(make_batch(1, start=1))[0], 200)
        self.assertEqual(len(self.mock.events), 2)


class TestGzip(MockTestCase):
    mock_options = {'compression': 'gzip'}

    def test_gzip_body(self):
        b = make_batch(3)
        status, _, body = self.client.send_batch(b, gz=True)
        self.assertEqual(status, 200)
        self.assertEqual(body['accepted'], 3)
        self.assertEqual(self.mock.violations, [])

    def test_plain_body_when_gzip_expected(self):
        self.assertEqual(self.client.send_batch(make_batch())[0], 400)
        self.assertViolation('no Content-Encoding')

    def test_corrupt_gzip(self):
        b = make_batch()
        raw = gzip.compress(json.dumps(b).encode())[:-6]
        self.client.post('/api/events/batch/', raw,
                         batch_headers(b, gz=True))
        self.assertViolation('truncated')


class TestNoCompression(MockTestCase):
    mock_options = {'compression': 'none'}

    def test_gzip_when_none_expected(self):
        self.assertEqual(self.client.send_batch(make_batch(), gz=True)[0],
                         400)
        self.assertViolation('compression none expected')


class TestSession(MockTestCase):
    mock_options = {'api_key': PK, 'token_ttl': 1}

    def test_mint_use_expire_revoke(self):
        status, _, body = self.client.mint({'user_id': 'u1'})
        self.assertEqual(status, 200)
        self.assertEqual(body['expires_in'], 1)
        token = body['token']
        b = make_batch()
        self.assertEqual(self.client.send_batch(b, auth=token)[0], 200)
        time.sleep(1.1)
        self.assertEqual(self.client.send_batch(b, auth=token)[0], 401)
        self.assertEqual(self.mock.expired_token_uses, 1)
        self.mock.token_ttl = 60
        token = self.client.mint({'user_id': 'u1'})[2]['token']
        self.assertEqual(self.client.send_batch(b, auth=token)[0], 200)
        self.mock.revoke_tokens()
        self.assertEqual(self.client.send_batch(b, auth=token)[0], 401)
        self.assertEqual(self.mock.expired_token_uses, 2)
        self.assertEqual([m['status'] for m in self.mock.mints], [200, 200])
        self.assertEqual(self.mock.violations, [])

    def test_events_with_raw_key_or_unknown_token(self):
        self.assertEqual(self.client.send_batch(make_batch(), auth=PK)[0],
                         401)
        self.assertViolation('raw key')
        self.client.send_batch(make_batch(), auth='tok_made_up')
        self.assertViolation('never minted')

    def test_mint_strictness(self):
        self.client.mint({'user_id': 'u1', 'extra': 1})
        self.assertViolation('exactly')
        self.client.mint({'user_id': 'u1'}, **{'Idempotency-Key': 'x'})
        self.assertViolation('Idempotency-Key')
        status, _, _ = self.client.mint({'user_id': 'u1'}, key='pk_other')
        self.assertEqual(status, 401)
        self.assertViolation('wrong pk_ key')

    def test_scripted_mint(self):
        self.mock.script_mint([{'status': 503, 'headers':
                                {'Retry-After': '1'}}])
        self.assertEqual(self.client.mint({'user_id': 'u1'})[0], 503)
        self.assertEqual(self.client.mint({'user_id': 'u1'})[0], 200)
        self.assertEqual(self.mock.violations, [])


class TestSignature(MockTestCase):
    mock_options = {'api_key': PK, 'require_sig': True,
                    'sig_secret': 'backend-secret'}

    def test_signatures(self):
        self.assertEqual(self.client.mint({'user_id': 'u1'})[0], 403)
        bad = sign_user_id('other-secret', 'u1')
        self.assertEqual(self.client.mint({'user_id': 'u1',
                                           'user_id_sig': bad})[0], 403)
        good = sign_user_id('backend-secret', 'u1')
        self.assertEqual(len(good), 64)
        self.assertEqual(self.client.mint({'user_id': 'u1',
                                           'user_id_sig': good})[0], 200)
        self.assertEqual(self.client.mint(
            {'user_id': 'u1', 'user_id_sig': good.upper()})[0], 403)
        self.assertEqual([m['status'] for m in self.mock.mints],
                         [403, 403, 200, 403])
        self.assertEqual(self.mock.violations, [])


class TestTLS(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='segops-tls-')
        cls.ca, cls.cert, cls.key = tlsca.make_ca(cls.dir)
        cls.bad_cert, cls.bad_key = tlsca.make_untrusted(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def serve(self, cert, key):
        mock = MockUpstream(api_key=SK, tls_cert=cert, tls_key=key).start()
        self.addCleanup(mock.stop)
        return mock

    def verified_context(self):
        return ssl.create_default_context(cafile=self.ca)

    def test_https_verified(self):
        mock = self.serve(self.cert, self.key)
        self.assertTrue(mock.url.startswith('https://127.0.0.1:'))
        client = Client(mock, self.verified_context())
        self.addCleanup(client.close)
        self.assertEqual(client.send_batch(make_batch())[0], 200)
        self.assertEqual(client.send_batch(make_batch())[0], 200)
        self.assertEqual(len(mock.events), 2)
        self.assertEqual(mock.violations, [])

    @unittest.skipUnless(shutil.which('curl'), 'curl not installed')
    def test_curl_verifies_with_ca_file(self):
        # The daemon uses libcurl: make sure it accepts these certs too,
        # for both names the certificate carries.
        mock = self.serve(self.cert, self.key)
        for host in ('127.0.0.1', 'localhost'):
            url = 'https://%s:%d/api/auth/session/' % (host, mock.port)
            proc = subprocess.run(
                ['curl', '-sS', '--cacert', self.ca, '-o', os.devnull,
                 '-w', '%{http_code}', '-X', 'POST', url],
                capture_output=True, timeout=10, check=False)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual(proc.stdout, b'400')   # reached, then refused

    def test_untrusted_cert_fails(self):
        mock = self.serve(self.bad_cert, self.bad_key)
        client = Client(mock, self.verified_context())
        self.addCleanup(client.close)
        with self.assertRaises(ssl.SSLCertVerificationError):
            client.send_batch(make_batch())
        self.assertEqual(mock.requests, [])
        self.assertTrue(mock.wait_until(lambda: mock.tls_failures, 2))


if __name__ == '__main__':
    unittest.main(verbosity=2)
