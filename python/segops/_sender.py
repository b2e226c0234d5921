"""The sender thread: what track() queued goes to segopsd in the
background.

The first event starts one daemon thread per client (per process: a
fork child starts its own). It sleeps while nothing is held and is
woken by the caller's side when it appends meanwhile (client.py's
_kick); it wakes on its own every ERROR_INTERVAL while there are drops
to report or segopsd is known to be down. Each round takes _send_lock and sends
one datagram (_datagrams.py does the sending), so that flush() and
shutdown() can hand over what is held on their own thread in between.
A bug in a round is reported through on_error and the thread goes on.
"""

import threading
import time

from ._datagrams import RECONNECT_INTERVAL
from ._drops import ERROR_INTERVAL
from ._process_life import register_mp_exit
from .errors import SegOpsError


class SenderThread:
    """Starting, running and stopping SegOpsClient's sender thread."""

    def _start_thread(self):
        with self._start_lock:
            if self._closed:
                if self._final:
                    self._drain_closed()
                return
            if self._thread is not None:
                return
            t = threading.Thread(target=self._run, name='segops-sender',
                                 daemon=True)
            try:
                t.start()
            except RuntimeError:
                # Interpreter shutdown: the atexit hand-over sends.
                return
            self._thread = t
        register_mp_exit()

    def _run(self):
        while not self._stopping:
            if not self._q and not self._staged:
                self._idle = True
                self._wake.clear()
                if not self._q and not self._stopping:
                    # Drops to tell on_error about later, or track()
                    # dropping while segopsd is down: wake up for them.
                    late = self._dropped != self._announced or \
                        self._down_until
                    self._wake.wait(ERROR_INTERVAL if late else None)
                self._idle = False
            else:
                with self._send_lock:
                    if self._stopping:
                        break
                    try:
                        self._step(RECONNECT_INTERVAL, force=False)
                    except Exception as e:  # noqa: BLE001 -- keep sending
                        # A bug here must not silence the client for
                        # good: say it, and go on with the next items.
                        self._report_limited('internal', SegOpsError(
                            'segops sender: %r' % (e,)))
                        time.sleep(RECONNECT_INTERVAL)
            self._announce_drops()

    def _stop_thread(self, timeout):
        t = self._thread
        self._stopping = True
        self._wake.set()
        if t is not None and t is not threading.current_thread():
            t.join(self._flush_timeout if timeout is None else timeout)
        self._thread = None
