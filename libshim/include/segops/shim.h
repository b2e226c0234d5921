/* segops/shim.h - fire-and-forget analytics events to segopsd.
 *
 * pkg-config: segops-shim. Link: $(pkg-config --cflags --libs segops-shim)
 *
 * libsegops-shim hands events to the local segopsd daemon over its
 * events socket (AF_UNIX, SOCK_DGRAM) and never blocks the caller doing
 * so. Each call encodes one NDJSON line into a fixed buffer allocated at
 * open time; one background thread (started at the first event) packs
 * many lines per datagram and pushes them out as fast as the daemon
 * takes them. When the daemon is down or the buffer is full the event is
 * dropped and counted (segops_dropped()); the count is reported to the
 * daemon with the next datagram that gets through, or by segops_flush()
 * and segops_shim_close() on the control socket, so `segopsctl stats`
 * shows it as "client_dropped".
 *
 * Conventions for every call:
 *   - returns 0 on success or a negative errno value (see each call);
 *   - errno is preserved; nothing is written to stdout/stderr; the
 *     library never exits, aborts or raises SIGPIPE;
 *   - a NULL handle or invalid argument gives -EINVAL; output parameters
 *     are untouched on failure;
 *   - all calls are thread-safe on one shared handle; none is
 *     async-signal-safe;
 *   - after fork() the child can keep using the handle: it gets its own
 *     socket and sender thread; events the parent still held are the
 *     parent's and are not sent twice;
 *   - strings are UTF-8; invalid UTF-8 (overlong forms, surrogates,
 *     truncated sequences, values above U+10FFFF) in any argument is
 *     rejected with -EINVAL rather than passed on for the daemon to drop.
 *
 * Environment: SEGOPS_SOCKET (events socket, when open() gets NULL),
 * SEGOPS_CONTROL_SOCKET (control socket; default: "segopsd.sock" in the
 * events socket's directory), SEGOPS_SHIM_BUFFER_BYTES (size of the
 * buffer in bytes, default 16 MiB, clamped to 2 MiB..1 GiB; pages are
 * touched only when a burst actually fills them). man segops_shim (and
 * man segops_track, ...) has all of this, with an example.
 *
 * This header is C89 and C++ clean.
 */
#ifndef SEGOPS_SHIM_H
#define SEGOPS_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opaque handle. One per process is the usual pattern; any number of
 * threads may share it. */
typedef struct segops_shim segops_shim;

/* Create a handle for the events socket at socket_path, or, when NULL,
 * $SEGOPS_SOCKET or "/run/segopsd/events.sock"; an empty path (given or
 * in the variable) means that default. Allocates the buffer; does not
 * connect (the first event does, so opening never fails because the
 * daemon is down).
 * Returns 0 and sets *ret; -EINVAL (ret NULL, or a path, or the control
 * socket's path derived from it, longer than a socket address holds);
 * -ENOMEM. */
int segops_shim_open(segops_shim **ret, const char *socket_path);

/* Queue one track event: user_id (1-256 bytes), event_type (1-128
 * bytes), payload_json a JSON object as text or NULL for {}. occurred_at
 * is the current time (UTC, milliseconds). The payload is checked only
 * cheaply: after trimming whitespace it must start with '{' and end with
 * '}' and be valid UTF-8; raw CR/LF in it become spaces. The daemon
 * validates fully (an invalid payload is counted there as "rejected").
 * Never blocks; allocates nothing once the handle is in use for an event
 * whose encoded line is at most 4 KiB; a longer line takes one heap
 * buffer for the duration of the call. A line over 64 KiB does not fit
 * a datagram: it waits in the buffer like any other, and the background
 * thread copies it into a sealed memfd when its turn comes, so events of
 * every size reach the daemon in the order they were queued. Copying a
 * large line into the buffer holds the handle's lock for that long
 * (tens of microseconds per MiB), which other threads' calls then wait
 * out.
 * Returns:
 *   0         queued; the background thread sends it;
 *   -EINVAL   NULL handle/user_id/event_type, a length out of range,
 *             invalid UTF-8, or a payload that is not an object
 *             (not counted as dropped: nothing was accepted);
 *   -EMSGSIZE the encoded line exceeds 1 MiB (not counted);
 *   -ENOTCONN the daemon is not running (counted as dropped); the shim
 *             tries to connect again at most every 100 ms, so this is
 *             a cheap, ordinary outcome;
 *   -EACCES   the socket exists but may not be used (counted);
 *   -ENOBUFS  the buffer is full: the daemon is slower than the caller
 *             (counted);
 *   -EAGAIN   the sender thread could not be started (counted);
 *   -ENOMEM   the heap buffer of a line over 4 KiB could not be had
 *             (counted);
 *   -EMFILE, -ENFILE  no descriptor for the socket (counted).
 * A large event whose memfd cannot be made later (no memory, no file
 * descriptor) is retried, or dropped and counted when that can never
 * work; segops_dropped() shows it. */
int segops_track(segops_shim *s, const char *user_id, const char *event_type,
                 const char *payload_json);

/* As segops_track() with an explicit occurred_at, in Unix milliseconds
 * (UTC). Years outside 0000-9999 are clamped to that range. Same returns. */
int segops_track_at(segops_shim *s, const char *user_id, const char *event_type,
                    int64_t occurred_at_ms, const char *payload_json);

/* Queue an identify message: user_id (1-256 bytes) and traits_json, a
 * JSON object as text or NULL for {}. The daemon turns it into the event
 * "context_identified" with payload {"traits": ...}. Same returns as
 * segops_track(). */
int segops_identify(segops_shim *s, const char *user_id, const char *traits_json);

/* Queue the op set_user: the identity the daemon uses for its next
 * session mint (pk_ keys). user_id_sig may be NULL (1-256 bytes when
 * given). Same returns as segops_track(). */
int segops_set_user(segops_shim *s, const char *user_id, const char *user_id_sig);

/* Queue the op reset_session: the daemon drops its cached session token.
 * Same returns as segops_track() (minus the argument checks). */
int segops_reset_session(segops_shim *s);

/* Block until everything this handle holds has been handed to the daemon
 * and the daemon reports that everything it holds was accepted upstream,
 * or until timeout_ms (0-3600000) passes. Uses the control socket
 * ($SEGOPS_CONTROL_SOCKET, else "segopsd.sock" next to the events
 * socket), where it also reports drops not yet reported. The only call
 * that blocks; it never waits to connect (a daemon too busy to accept
 * gives -ETIMEDOUT; one that turns the connection away as over its
 * connection caps is asked again every 10 ms until timeout_ms) and may
 * overrun timeout_ms by at most 20 ms, the
 * time allowed for the daemon's answer to arrive. timeout_ms 0 therefore
 * asks "is everything already delivered?": 0 only when this handle
 * holds nothing and the daemon, asked with timeout_ms 0, says ok.
 * Returns 0; -EINVAL; -ETIMEDOUT (the buffer did not drain, the daemon
 * did not accept the connection, or no reply in time); -ENOTCONN (the
 * daemon is not running); -EACCES; -EIO (the daemon answered ok:false,
 * e.g. the upstream did not accept in time, or an unreadable reply). */
int segops_flush(segops_shim *s, int timeout_ms);

/* Events (and ops) accepted from the caller but not handed to the daemon
 * since the handle was opened: monotonic, never reset. 0 for NULL. */
uint64_t segops_dropped(const segops_shim *s);

/* Push out what the handle holds (waiting at most 2 seconds; what is
 * left then is dropped and counted), stop the thread, report drops not
 * yet reported on the control socket (best effort, at most 0.1 s more),
 * close the socket and free the handle. NULL is fine. The handle must not be used afterwards, nor
 * concurrently with this call. */
void segops_shim_close(segops_shim *s);

#ifdef __cplusplus
}
#endif

#endif
