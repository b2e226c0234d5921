"""The fault matrix's shared pieces (issue 9, items 11 and 12).

Each fault case runs the real segopsd with the spool on against the mock
upstream (tests/lib/harness.py, tests/lib/mockupstream.py), streams
events the way a client that needs certainty does (a chunk of events,
then a ping on the same stream connection: its answer acknowledges every
event before it, SPEC section 2), injects one fault, and then accounts
for every event it sent:

  acknowledged  events whose ping was answered
  delivered     distinct event ids of ours the upstream stored
  lost          acknowledged and never delivered
  duplicates    copies the upstream stored beyond the first (resends)
  dropped       what segopsd counted in `dropped`, summed over its runs
                (a stopped run's "stopped:" log line, a killed run's last
                stats)

Knobs (environment):
  SEGOPS_FAULT_SCALE   short (default; what CI runs) or full (the
                       issue's sizes; scripts/fault-matrix.sh sets it)
  SEGOPS_FAULT_SEED    seed of the random moments (printed by each case)
  SEGOPS_FAULT_REPORT  a file each case appends its row to, as one JSON
                       line (scripts/fault-matrix.sh prints the table)
"""

import collections
import json
import os
import random
import re
import socket
import sys
import threading
import time

from harness import SegopsTestCase

SCALE = os.environ.get('SEGOPS_FAULT_SCALE', 'short')
if SCALE not in ('short', 'full'):
    raise SystemExit('SEGOPS_FAULT_SCALE must be short or full, not %r'
                     % SCALE)
SEED = int(os.environ.get('SEGOPS_FAULT_SEED') or
           random.SystemRandom().randrange(1 << 31))

# Ceilings for waits: generous, so that a loaded machine or a sanitizer
# build is slow but never fails; a product that hangs still fails.
DELIVERY_TIMEOUT = 120.0 if SCALE == 'full' else 60.0
REPLY_TIMEOUT = 30.0        # a ping not answered by a live daemon
RECONNECT_TIMEOUT = 30.0    # the control socket back after a restart

DROP_RE = re.compile(r'(\d+) (memory_full|upstream_rejected|too_large|'
                     r'shutdown|spool_full|spool_corrupt)\b')


def size(short, full):
    """The short form's value, or the full one."""
    return full if SCALE == 'full' else short


class DaemonGone(Exception):
    """The control connection failed: segopsd died or is restarting."""


class Sender:
    """One client on the control socket. Each chunk of events is followed
    by a ping; the ping's answer acknowledges the chunk. A chunk cut off
    by a crash is unacknowledged (some of it may still be delivered) and
    the sender goes on with new events: it never resends, so every
    duplicate the upstream sees is segopsd's."""

    def __init__(self, daemon, prefix='f', chunk=100, pad=0):
        self.d = daemon
        self.prefix = prefix
        self.chunk_size = chunk
        self.pad = 'p' * pad
        self.lock = threading.Lock()
        self.next = 0
        self.sent = set()        # written to the socket
        self.acked = set()       # and acknowledged
        self.cut_off = 0         # chunks that lost their connection
        self.sock = None
        self.error = None        # from the background thread
        self._thread = None
        self._halt = threading.Event()

    # ---- ids ----------------------------------------------------------
    def event_id(self, i):
        return '%s-%07d' % (self.prefix, i)

    def owns(self, eid):
        return eid.startswith(self.prefix + '-')

    @property
    def n_sent(self):
        with self.lock:
            return len(self.sent)

    @property
    def n_acked(self):
        with self.lock:
            return len(self.acked)

    # ---- one chunk ------------------------------------------------------
    def _connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(REPLY_TIMEOUT)
        try:
            s.connect(self.d.control_socket)
        except OSError as e:
            s.close()
            raise DaemonGone(e) from None
        self.sock = s

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _read_reply(self, buf):
        """Read until a complete line; returns (line, rest)."""
        while b'\n' not in buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError('segopsd (pid %s) did not answer a ping '
                                     'within %.0f s' % (self.d.pid,
                                                        REPLY_TIMEOUT)) \
                    from None
            except OSError as e:
                raise DaemonGone(e) from None
            if not chunk:
                raise DaemonGone('connection closed')
            buf += chunk
        line, _, rest = buf.partition(b'\n')
        return line, rest

    def send_chunk(self, n=None, extra=None):
        """Send n events (and the messages in extra) then a ping. True
        when acknowledged; False when the connection failed first."""
        n = self.chunk_size if n is None else n
        with self.lock:
            first = self.next
            self.next += n
        ids = [self.event_id(i) for i in range(first, first + n)]
        msgs = [{'event_id': eid, 'user_id': 'u%d' % (i % 7),
                 'event_type': 'fault', 'payload': {'i': i, 'pad': self.pad}}
                for i, eid in zip(range(first, first + n), ids)]
        msgs += list(extra or [])
        ids += [m['event_id'] for m in extra or []]
        data = ''.join(json.dumps(m) + '\n' for m in msgs)
        data += '{"op":"ping"}\n'
        try:
            if self.sock is None:
                self._connect()
            with self.lock:
                self.sent.update(ids)
            self.sock.sendall(data.encode())
            buf = b''
            while True:
                line, buf = self._read_reply(buf)
                reply = json.loads(line)
                if reply.get('ok') is not True:
                    raise AssertionError('segopsd rejected a line: %r'
                                         % reply)
                if 'version' in reply:
                    break
        except DaemonGone:
            self.close()
            with self.lock:
                self.cut_off += 1
            return False
        except OSError:
            self.close()
            with self.lock:
                self.cut_off += 1
            return False
        with self.lock:
            self.acked.update(ids)
        return True

    def send_one(self, msg):
        """One extra message (with its own event_id) acknowledged."""
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        while not self.send_chunk(0, [msg]):
            if time.monotonic() > deadline:
                raise AssertionError('segopsd unreachable for %.0f s'
                                     % RECONNECT_TIMEOUT)
            time.sleep(0.02)

    # ---- streams --------------------------------------------------------
    def run(self, events=None, seconds=None, rate=None):
        """Send chunks until `events` more were acknowledged, or for
        `seconds`, at most `rate` events per second. A lost connection
        is retried every 20 ms for up to RECONNECT_TIMEOUT."""
        start = time.monotonic()
        goal = self.n_acked + events if events is not None else None
        down_since = None
        while not self._halt.is_set():
            now = time.monotonic()
            if goal is not None and self.n_acked >= goal:
                break
            if seconds is not None and now - start >= seconds:
                break
            n = self.chunk_size
            if goal is not None:
                n = min(n, goal - self.n_acked)
            if self.send_chunk(n):
                down_since = None
            else:
                down_since = down_since or now
                if now - down_since > RECONNECT_TIMEOUT:
                    raise AssertionError('segopsd unreachable for %.0f s'
                                         % RECONNECT_TIMEOUT)
                time.sleep(0.02)
                continue
            if rate:
                ahead = self.n_sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(min(ahead, 1.0))

    def start(self, **kw):
        """run(**kw) on a thread of its own; join() waits for it."""
        def main():
            try:
                self.run(**kw)
            except BaseException as e:  # noqa: B902 (reported by join)
                self.error = e
        self._halt.clear()
        self._thread = threading.Thread(target=main, daemon=True,
                                        name='sender-' + self.prefix)
        self._thread.start()

    def alive(self):
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout, halt=False):
        if halt:
            self._halt.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._halt.set()
            self._thread.join(REPLY_TIMEOUT + 5)
            raise AssertionError('the sender did not finish within %.0f s'
                                 % timeout)
        if self.error is not None:
            raise self.error


class Runs:
    """segopsd's runs in one case: start, stop (SIGTERM), kill (-9), and
    what each run counted as dropped."""

    def __init__(self, daemon):
        self.d = daemon
        self.dropped = collections.Counter()
        self.kills = []             # time.monotonic() of each kill -9
        self.kill_walls = []        # and time.time(), for sent_at
        self.starts = 0
        self.stop_lines = []        # each clean stop's "stopped:" line
        self.last_stats = None
        self.history = []           # each ended run's last stats
        self.on_stop = []           # called after a clean stop
        self._log_from = 0

    def start(self):
        try:
            self._log_from = os.path.getsize(self.d.stderr_path)
        except FileNotFoundError:
            self._log_from = 0
        self.d.start()
        self.starts += 1
        return self.d

    def log(self):
        """This run's log (stderr) so far."""
        with open(self.d.stderr_path, 'rb') as f:
            f.seek(self._log_from)
            return f.read().decode('utf-8', 'replace')

    def stats(self):
        self.last_stats = self.d.stats()
        return self.last_stats

    def stop(self, timeout=60.0):
        """SIGTERM; the run's drops are read from its last log line."""
        self.history.append(self.stats())
        rc = self.d.stop(timeout=timeout)
        if rc != 0:
            raise AssertionError('segopsd exited %d on SIGTERM:\n%s'
                                 % (rc, self.d.stderr_tail()))
        lines = [l for l in self.log().splitlines() if 'stopped:' in l]
        if not lines:
            raise AssertionError('no "stopped:" line at the end of the run:'
                                 '\n%s' % self.d.stderr_tail())
        for fn in self.on_stop:
            fn()
        line = lines[-1]
        self.stop_lines.append(line)
        m = re.search(r'since start: (.*)$', line)
        for n, why in DROP_RE.findall(m.group(1) if m else ''):
            self.dropped[why] += int(n)
        return line

    def kill(self):
        """kill -9; the run's drops are its last stats before it."""
        st = self.stats()
        self.history.append(st)
        self.dropped.update({k: v for k, v in st['dropped'].items() if v})
        self.kills.append(time.monotonic())
        self.kill_walls.append(time.time())
        self.d.kill()

    def total(self, *path):
        """A counter summed over the ended runs' last stats, e.g.
        total('spool', 'replayed')."""
        n = 0
        for st in self.history:
            for k in path:
                st = st[k]
            n += st
        return n

    def stopped_lost(self):
        """Events the clean stops said were lost (priority crit)."""
        return sum(int(m.group(1)) for line in self.stop_lines
                   for m in [re.search(r'stopped: (\d+) events could not be '
                                       r'delivered', line)] if m)


def copies(upstream, sender):
    """event_id -> how many times the upstream stored it (ours only)."""
    return collections.Counter(e['event_id'] for e in upstream.event_log
                               if sender.owns(e['event_id']))


def stored_requests(upstream):
    return [r for r in upstream.batch_requests if r['stored']]


def vm_rss_kb(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except (OSError, ValueError, TypeError):
        pass
    return 0


class FaultCase(SegopsTestCase):
    """A SegopsTestCase with a spool, a sender, the runs, and the row of
    the table each case ends with (record())."""

    def setUp(self):
        super().setUp()
        self.t0 = time.monotonic()
        self.rng = random.Random('%d/%s' % (SEED, self.id()))
        self.spool = os.path.join(self.tmpdir, 'spool')
        self.runs = None
        self.sender = None

    def spool_daemon(self, spool=None, chunk=100, pad=100, **overrides):
        """A configured, not yet started segopsd with the spool on, its
        Runs and a Sender."""
        if spool is not None:
            self.spool = spool
        overrides.setdefault('buffer__spool_dir', self.spool)
        overrides.setdefault('upstream__stop_timeout', '0.3')
        overrides.setdefault('log__level', 'info')
        d = self.make_daemon(**overrides)
        self.runs = Runs(d)
        self.sender = Sender(d, chunk=chunk, pad=pad)
        self.addCleanup(self.sender.close)
        # A client whose daemon stopped reconnects (a kill, with the
        # sender streaming on its own thread, cuts its chunk instead).
        self.runs.on_stop.append(
            lambda: None if self.sender.alive() else self.sender.close())
        return d

    # ---- accounting ------------------------------------------------------
    def account(self):
        c = copies(self.upstream, self.sender)
        delivered = set(c)
        lost = self.sender.acked - delivered
        return {
            'acknowledged': len(self.sender.acked),
            'sent': len(self.sender.sent),
            'delivered': len(delivered),
            'lost': len(lost),
            'lost_ids': sorted(lost),
            'duplicates': sum(n - 1 for n in c.values()),
            'dropped': dict(self.runs.dropped),
            'copies': c,
        }

    def wait_delivered(self, ids=None, timeout=DELIVERY_TIMEOUT):
        """Every acknowledged event (or ids) reached the upstream, or the
        ceiling passed; returns the missing ones."""
        want = set(self.sender.acked if ids is None else ids)
        up = self.upstream
        up.wait_until(lambda: want <= set(up.events), timeout, interval=0.1)
        return want - set(up.events)

    def wait_spool_empty(self, timeout=DELIVERY_TIMEOUT):
        st = self.runs.d.wait_for_stats(
            lambda s: s['spool']['pending_events'] == 0 and
            s['in_flight'] == 0 and s['queued_events'] == 0,
            timeout=timeout, interval=0.1)
        self.runs.last_stats = st
        return st

    def run(self, result=None):
        # The row is written once the outcome is known, with it.
        self._row = None
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        super().run(result)
        bad = (result.failures + result.errors)[before:]
        if self._row is None:
            if not bad:
                return result   # skipped
            # It failed before it could account: a row all the same.
            self._row = {'fault': self.id().split('.', 1)[-1],
                         'case': self.id().split('.', 1)[-1],
                         'scale': SCALE, 'seed': SEED, 'notes': ''}
        self._row['verdict'] = 'FAIL' if bad else 'pass'
        if bad:
            lines = bad[-1][1].strip().splitlines()
            self._row['failure'] = lines[-1][:300] if lines else ''
        path = os.environ.get('SEGOPS_FAULT_REPORT')
        if path:
            with open(path, 'a', encoding='utf-8') as f:
                f.write(json.dumps(self._row, sort_keys=True) + '\n')
        return result

    def record(self, fault, acc, notes, **extra):
        """The case's row of the table: printed now, and appended to
        SEGOPS_FAULT_REPORT with the verdict once the case is over."""
        row = {'fault': fault, 'case': self.id().split('.', 1)[-1],
               'scale': SCALE, 'seed': SEED,
               'seconds': round(time.monotonic() - self.t0, 1),
               'acknowledged': acc['acknowledged'],
               'unacknowledged_sent': acc['sent'] - acc['acknowledged'],
               'delivered': acc['delivered'], 'lost': acc['lost'],
               'duplicates': acc['duplicates'],
               'dropped': acc['dropped'], 'notes': notes}
        row.update(extra)
        # The case's temporary directory is nobody's business in a table.
        row['notes'] = row['notes'].replace(self.tmpdir, '$TMPDIR')
        sys.stderr.write('\nFAULT %s\n' % json.dumps(row, sort_keys=True))
        self._row = row
        return row

    def assertNoLoss(self, acc):
        self.assertEqual(acc['lost'], 0, 'acknowledged events lost: %s'
                         % acc['lost_ids'][:20])

    def assertNoDrops(self, acc):
        self.assertEqual(acc['dropped'], {}, 'segopsd counted drops')
