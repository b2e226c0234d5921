"""The local protocol's lines, as this client writes them (no I/O).

PROTOCOL.md is the reference: one JSON object per line; a datagram
holds whole lines. Every line here is ASCII (json's ensure_ascii):
its length in characters is its length in bytes, which is what packing
datagrams needs, and a lone surrogate in a caller's string becomes a
``\\udXXX`` escape instead of failing the encoding of a whole datagram;
bad_escape() finds it (and NUL), which segopsd would reject, so that
the client drops and counts that one event instead of sending it.

The hot part is encode_item(), run by the sender for every event:
plain string building around the C escaper for the two strings, and
json's C encoder for the payload only.
"""

import datetime
import json
import math
import re

# Lines are packed into datagrams of at most this many bytes, as libshim
# does (segopsd's max_datagram_bytes is larger by default). A line that
# does not fit one alone goes over the control socket.
DGRAM_BYTES = 65536
# Room kept in each datagram for a client_dropped line in front.
DROPPED_LINE_MAX = 96

_enc = json.encoder.encode_basestring_ascii


def _no_default(o):
    raise TypeError('Object of type %s is not JSON serializable'
                    % type(o).__name__)


# json.dumps builds a new C encoder on every call, which costs more than
# encoding a small payload: build it once. No cycle check (markers None):
# a payload that contains itself ends in RecursionError, which drops that
# one event like any other encoding failure.
if getattr(json.encoder, 'c_make_encoder', None) is not None:
    _c_encoder = json.encoder.c_make_encoder(
        None, _no_default, _enc, None, ':', ',', False, False, False)

    def _dumps(obj, _join=''.join, _encoder=_c_encoder):
        return _join(_encoder(obj, 0))
else:   # an interpreter without the _json accelerator
    _dumps = json.JSONEncoder(ensure_ascii=True, separators=(',', ':'),
                              allow_nan=False).encode
_UTC = datetime.timezone.utc

# Item kinds in the client's queue (tuples; the first field is the kind).
TRACK = 0
IDENTIFY = 1
SET_USER = 2
RESET = 3

# RFC 3339 as segopsd takes it (PROTOCOL.md, "Normalisation"); the daemon
# checks the calendar and the range.
_RFC3339 = re.compile(r'\A\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?'
                      r'(?:[Zz]|[+-]\d{2}:\d{2})\Z', re.ASCII)


def check_time(value):
    """Raise for an occurred_at that can never be valid (cheap: the
    conversion of datetimes happens in the sender). Returns value."""
    t = type(value)
    if t is float:
        if not math.isfinite(value):
            raise ValueError('occurred_at must be finite')
        return value
    if t is int or isinstance(value, datetime.datetime):
        return value
    if t is str:
        if not _RFC3339.match(value):
            raise ValueError('occurred_at %r is not RFC 3339 '
                             '(YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm))'
                             % value[:64])
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return check_time(float(value) if isinstance(value, float)
                          else int(value))
    raise TypeError('occurred_at must be a datetime, an RFC 3339 string or '
                    'epoch seconds, not %s' % t.__name__)


def encode_time(value):
    """occurred_at as JSON text: epoch seconds as a number, strings as
    they are, datetimes as UTC RFC 3339 with microseconds (segopsd
    truncates to milliseconds); a naive datetime is UTC."""
    t = type(value)
    if t is float:
        return repr(value)
    if t is int:
        return str(value)
    if t is str:
        return _enc(value)
    if value.tzinfo is not None and value.utcoffset() is not None:
        value = value.astimezone(_UTC)
    return '"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"' % (
        value.year, value.month, value.day, value.hour, value.minute,
        value.second, value.microsecond)


def epoch_ms_text(ms):
    """Whole milliseconds since the epoch (>= 0) as epoch seconds text."""
    return '%d.%03d' % divmod(ms, 1000)


def encode_item(item):
    """One queued item (a tuple whose first field is its kind) as its
    NDJSON line. Raises TypeError/ValueError/OverflowError for what JSON
    or the clock cannot represent."""
    kind = item[0]
    if kind == TRACK:
        _, user_id, event_type, at, payload, event_id = item
        head = '{"user_id":' + _enc(user_id)
        if event_id is not None:
            head += ',"event_id":' + _enc(event_id)
        return (head + ',"event_type":' + _enc(event_type) +
                ',"occurred_at":' + (repr(at) if type(at) is float
                                     else encode_time(at)) +
                ',"payload":' + (_dumps(payload) if payload else '{}') +
                '}\n')
    if kind == IDENTIFY:
        _, user_id, at, traits = item
        return ('{"type":"identify","user_id":' + _enc(user_id) +
                ',"occurred_at":' + (repr(at) if type(at) is float
                                     else encode_time(at)) +
                ',"traits":' + (_dumps(traits) if traits else '{}') +
                '}\n')
    if kind == SET_USER:
        return set_user_line(item[1], item[2])
    if kind == RESET:
        return '{"op":"reset_session"}\n'
    raise AssertionError('unknown item kind %r' % (kind,))


_ESCAPE = re.compile(r'\\(?:u([0-9a-f]{4})|.)')


def bad_escape(line):
    """What segopsd must reject in a line made by this module, or None:
    a NUL (\\u0000) or a lone surrogate (a high one not directly followed
    by a low one, or a low one alone), as json's ensure_ascii writes
    them. Only worth calling when the line holds '\\u0000' or '\\ud'."""
    pending = -1    # where an unpaired high surrogate's escape ended
    for m in _ESCAPE.finditer(line):
        u = m.group(1)
        if pending >= 0:
            if u is not None and m.start() == pending and \
                    'dc00' <= u <= 'dfff':
                pending = -1
                continue
            return 'a lone surrogate'
        if u is None:
            continue
        if u == '0000':
            return 'a NUL character'
        if 'd800' <= u <= 'dbff':
            pending = m.end()
        elif 'dc00' <= u <= 'dfff':
            return 'a lone surrogate'
    return 'a lone surrogate' if pending >= 0 else None


def set_user_line(user_id, user_id_sig):
    line = '{"op":"set_user","user_id":' + _enc(user_id)
    if user_id_sig is not None:
        line += ',"user_id_sig":' + _enc(user_id_sig)
    return line + '}\n'


def dropped_line(count, pid=None):
    """The client_dropped op (pid: this process, on datagrams)."""
    if pid:
        return '{"op":"client_dropped","count":%d,"pid":%d}\n' % (count, pid)
    return '{"op":"client_dropped","count":%d}\n' % count


def flush_line(timeout_ms):
    return '{"op":"flush","timeout_ms":%d}\n' % timeout_ms


PING_LINE = '{"op":"ping"}\n'
