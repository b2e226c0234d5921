"""Exchanges with segopsd on its control (stream) socket.

flush and close send the op flush (and client_dropped) here; the sender
sends a line too large for a datagram here, followed by a ping whose
reply says every earlier line was read. One connection per exchange,
bounded by the caller's deadline everywhere (a full listen backlog is a
timeout, not a hang). A daemon that turns the connection away as
``too_many_connections`` is asked again every 10 ms within the
deadline, as libshim does.
"""

import errno
import json
import socket as _socket
import time

from .errors import DaemonUnavailableError, FlushTimeoutError

BUSY_RETRY = 0.010      # again after "too_many_connections"
REPLY_GRACE = 0.020     # a reply's trip back to us
_BUSY = {'ok': False, 'error': 'too_many_connections'}


def _unavailable(path, e):
    if isinstance(e, PermissionError):
        what = 'no permission to use segopsd\'s socket %s' % path
    else:
        what = 'segopsd is not running (nothing at %s: %s)' % (
            path, e.strerror or e)
    return DaemonUnavailableError(what, path=path, errno=e.errno)


def _complete(buf, n_replies):
    """True once buf holds n_replies lines, or, with n_replies None, the
    reply to a ping (the one reply with "version")."""
    if n_replies is not None:
        return buf.count(b'\n') >= n_replies
    for line in buf.split(b'\n')[:-1]:
        try:
            if 'version' in json.loads(line):
                return True
        except (ValueError, TypeError):
            pass
    return False


def _exchange_once(path, data, n_replies, deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise FlushTimeoutError('no time left to reach segopsd at %s' % path)
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(left)
        try:
            s.connect(path)
        except _socket.timeout:
            raise FlushTimeoutError('segopsd at %s did not accept the '
                                    'connection in time' % path) from None
        except (BlockingIOError, InterruptedError):
            # EAGAIN: the listen backlog is full (segopsd is stalled);
            # asked again within the deadline, as a busy daemon is.
            return [_BUSY]
        except OSError as e:
            # ENOENT, ECONNREFUSED, EACCES, ENOTDIR, EPROTOTYPE (not a
            # stream socket), ...: never a bare OSError to the caller.
            raise _unavailable(path, e) from None
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass    # turned away before reading: its reason is readable
        except _socket.timeout:
            raise FlushTimeoutError('segopsd at %s did not read the request '
                                    'in time' % path) from None
        buf = b''
        while not _complete(buf, n_replies):
            left = deadline - time.monotonic()
            if left <= 0:
                raise FlushTimeoutError('segopsd at %s did not answer in time'
                                        % path)
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except _socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b''
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    replies = []
    for line in buf.split(b'\n'):
        if line.strip():
            try:
                replies.append(json.loads(line))
            except ValueError:
                replies.append({'ok': False, 'error': 'unreadable reply',
                                'detail': line[:200].decode('utf-8',
                                                            'replace')})
    if not replies:
        raise DaemonUnavailableError('segopsd at %s closed the connection '
                                     'without answering' % path, path=path,
                                     errno=errno.ECONNRESET)
    return replies


def exchange(path, lines, n_replies, deadline):
    """Send lines (str, NDJSON) on one connection to the control socket
    at path and return the first n_replies replies (dicts; fewer when
    the daemon closed early); with n_replies None, every reply up to and
    including a ping's. Raises DaemonUnavailableError or
    FlushTimeoutError; a busy daemon is asked again until deadline."""
    data = lines.encode('utf-8')
    while True:
        replies = _exchange_once(path, data, n_replies, deadline)
        busy = replies[0].get('ok') is not True and \
            replies[0].get('error') == 'too_many_connections'
        if not busy:
            return replies if n_replies is None else replies[:n_replies]
        if time.monotonic() + BUSY_RETRY >= deadline:
            raise FlushTimeoutError('segopsd at %s stayed too busy to take '
                                    'the connection' % path)
        time.sleep(BUSY_RETRY)
