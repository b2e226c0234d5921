"""Fork, exit and multiprocessing: a client's state follows the process.

Fork: a child gets a fresh client state (empty deque, no thread, its own
socket); what the parent held stays the parent's to send. atexit: every
client not closed hands over what it holds, within ``exit_timeout``, and
reports its drops, never raising. A multiprocessing child ends in
os._exit(), which skips atexit: its hand-over is registered as a
multiprocessing finalizer instead. The registry of live clients is a
WeakSet, so that a client the application let go is not kept alive.
"""

import atexit
import os
import sys
import time
import weakref

from . import _control, _wire
from .errors import SegOpsError

clients = weakref.WeakSet()     # every client not shut down, held weakly

_monotonic = time.monotonic


class ProcessLife:
    """What SegOpsClient does when its process forks or exits."""

    def _at_exit(self):
        """The interpreter is exiting and nobody called shutdown(): hand
        over what is held (bounded), report drops, never raise."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            self._limit = 0
        deadline = _monotonic() + self._exit_timeout
        self._stop_thread(self._exit_timeout)
        try:
            self._hand_over(deadline)
            claim = self._claim_unreported()
            if claim:
                try:
                    _control.exchange(self._control_path,
                                      _wire.dropped_line(claim), 1,
                                      min(deadline, _monotonic() + 0.5))
                except SegOpsError:
                    pass
        except SegOpsError as e:
            self._report(e)
        self._final = True
        self._drain_closed()
        self._next_announce = 0.0
        self._announce_drops()
        self._close_socket()

    def _after_fork_child(self):
        # The parent's socket (a copy of its descriptor) and thread stay
        # the parent's; so does what it held.
        s = self._sock
        self._init_state()
        if s is not None:
            try:
                s.close()
            except OSError:
                pass


def _after_fork_in_child():
    for c in list(clients):
        c._after_fork_child()


def _exit_all():
    for c in list(clients):
        c._at_exit()


_mp_exit_pid = None


def register_mp_exit():
    """A multiprocessing child ends in os._exit(), without atexit: its
    hand-over is registered as a multiprocessing finalizer, which that
    exit runs (once per process; registered at the first event, after
    the child cleared the finalizers it inherited)."""
    global _mp_exit_pid
    pid = os.getpid()
    if _mp_exit_pid == pid:
        return
    mpp = sys.modules.get('multiprocessing.process')
    mpu = sys.modules.get('multiprocessing.util')
    if mpp is None or mpu is None or mpp.parent_process() is None:
        return
    _mp_exit_pid = pid
    mpu.Finalize(None, _exit_all, exitpriority=0)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_exit_all)
