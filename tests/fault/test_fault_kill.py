"""Fault matrix: kill -9 at random moments during a steady stream, with
a restart after each and the stream going on (SPEC section 5: with the
spool on, nothing counted as accepted is lost by a crash). No
acknowledged event may be lost, nothing may be counted as dropped, and
a resend is allowed only for what a crash interrupted: what was in
flight, or delivered in the checkpoint's last moments (docs/SPOOL.md)."""

import bisect
import calendar
import json
import os
import time
import unittest

from faultlib import (DELIVERY_TIMEOUT, FaultCase, SCALE, size,
                      stored_requests)

# A resend after a crash is allowed for what was in flight at the kill
# and for what was delivered in the checkpoint's last moments before it
# (SPOOL.md: 50 ms). This is how long before the kill the first copy may
# have been stored: ten times that, for a loaded machine.
DUP_WINDOW = float(os.environ.get('SEGOPS_FAULT_DUP_WINDOW') or 0.5)
# The shortest run between two kills: longer than DUP_WINDOW, so that a
# resend of what was stored early in a run would show.
MIN_RUN = DUP_WINDOW + 0.3


def wall(rfc3339):
    """time.time() of a YYYY-MM-DDTHH:MM:SS.mmmZ timestamp."""
    return calendar.timegm(time.strptime(rfc3339[:19], '%Y-%m-%dT%H:%M:%S')) \
        + int(rfc3339[20:23]) / 1000.0


class KillTests(FaultCase):

    def resends_after_kills(self):
        """Each extra copy of an event, against the kills: (unexplained
        copies, lags). The run that sent a request is known from its
        sent_at (the daemon's wall clock at the first attempt). A copy
        may follow an earlier one only in a later run, and the earlier
        one must have been stored at most DUP_WINDOW before the kill
        that ended its run: its lag (negative: stored after the kill,
        i.e. the request was in flight)."""
        seen = {}
        for r in stored_requests(self.upstream):
            sent = json.loads(r['body'])['sent_at']
            run = bisect.bisect_right(self.runs.kill_walls, wall(sent))
            for eid in r['event_ids']:
                if self.sender.owns(eid):
                    seen.setdefault(eid, []).append((run, r['done']))
        bad, lags = [], []
        for eid, cps in seen.items():
            cps.sort()
            for (run1, done1), (run2, _) in zip(cps, cps[1:]):
                if run2 == run1 or run1 >= len(self.runs.kills):
                    bad.append((eid, 'stored twice by run %d' % run1))
                    continue
                lag = self.runs.kills[run1] - done1
                lags.append(lag)
                if lag > DUP_WINDOW:
                    bad.append((eid, 'first stored %.3f s before the kill'
                                % lag))
        return bad, lags

    def test_kill_9_during_a_steady_stream(self):
        total, rate = size(6000, 200000), size(600, 4000)
        kills = size(10, 20)
        d = self.spool_daemon(batch__batch_size='100',
                              buffer__max_spool='64M')
        self.runs.start()
        # Random moments in the stream's span, at least MIN_RUN apart
        # (and from its ends), each as the number of events sent by then.
        span = total / rate
        slack = span - (kills + 1) * MIN_RUN
        self.assertGreater(slack, 0)
        moments = [int(rate * (MIN_RUN * (i + 1) + t)) for i, t in
                   enumerate(sorted(self.rng.uniform(0, slack)
                                    for _ in range(kills)))]
        # The stream goes on until every kill is done and `total` events
        # were acknowledged, however long the restarts take.
        self.sender.start(rate=rate)
        for m in moments:
            not_before = time.monotonic() + MIN_RUN
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while (self.sender.n_sent < m or time.monotonic() < not_before) \
                    and self.sender.alive() and time.monotonic() < deadline:
                time.sleep(0.002)
            self.assertTrue(self.sender.alive(), 'the sender failed before '
                            'kill %d: %r' % (len(self.runs.kills) + 1,
                                             self.sender.error))
            self.assertTrue(d.running(), 'segopsd died by itself:\n'
                            + d.stderr_tail())
            self.runs.kill()
            self.runs.start()
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while self.sender.n_acked < total and self.sender.alive() and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        self.sender.join(DELIVERY_TIMEOUT, halt=True)
        missing = self.wait_delivered()
        st = self.wait_spool_empty()
        self.assertEqual(st['spool']['pending_events'], 0)
        self.runs.stop()
        acc = self.account()
        bad, lags = self.resends_after_kills()
        self.record(
            'kill -9 at %d random moments during a %d-event stream'
            % (len(self.runs.kills), total), acc,
            'spool.replayed %d over %d restarts; each resent event was '
            'first stored at most %.0f ms before the kill that ended its '
            'run, or in flight at it; no damage logged'
            % (self.runs.total('spool', 'replayed'), self.runs.starts - 1,
               1000 * max(lags or [0])),
            kills=len(self.runs.kills), chunks_cut_off=self.sender.cut_off)
        self.assertFalse(missing, 'acknowledged events never delivered: %s'
                         % sorted(missing)[:20])
        self.assertNoLoss(acc)
        self.assertNoDrops(acc)
        self.assertEqual(bad, [], 'resends a crash does not explain')
        self.assertNotIn('damaged', d.stderr_text())
        self.assertNoViolations()


if __name__ == '__main__':
    print('fault matrix scale %s' % SCALE)
    unittest.main(verbosity=2)
