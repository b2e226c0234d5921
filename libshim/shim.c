/* shim.c - libshim's public API: the handle's life and the calls.
 *
 * It owns the handle (open, close), argument checking, the order of
 * work in each call (encode lock-free on the caller's stack, then take
 * the mutex only to connect if needed and copy into the ring), errno
 * preservation, and fork safety: every open handle is in a registry so
 * a pthread_atfork child handler can give the child a clean handle (no
 * parent thread, an empty ring, its own socket), and the drop count.
 * Encoding is in encode.c, the ring in ring.c, sending in sender.c (and
 * memfd.c for large lines), flush and close's talk with the daemon in
 * control.c.
 */
#include "shim-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;
static struct segops_shim *registry;

/* Hold every handle still so the child inherits consistent state. */
static void atfork_prepare(void)
{
        struct segops_shim *s;

        pthread_mutex_lock(&registry_lock);
        for (s = registry; s; s = s->next)
                pthread_mutex_lock(&s->lock);
}

static void atfork_parent(void)
{
        struct segops_shim *s;

        for (s = registry; s; s = s->next)
                pthread_mutex_unlock(&s->lock);
        pthread_mutex_unlock(&registry_lock);
}

/* Both condition variables wait on CLOCK_MONOTONIC, the clock every
 * deadline here is computed on (deadline_ts() in sender.c); with the
 * default CLOCK_REALTIME every timed wait would return at once and spin.
 * Used by open and by the fork child, which must re-create them the
 * same way. */
static void init_conds(struct segops_shim *s)
{
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&s->wake, &ca);
        pthread_cond_init(&s->drained, &ca);
        pthread_condattr_destroy(&ca);
}

static void atfork_child(void)
{
        struct segops_shim *s;

        for (s = registry; s; s = s->next) {
                /* The sender thread does not exist here; its condition
                 * variables may record waiters that never return. */
                init_conds(s);
                s->thread_started = false;
                s->thread_idle = false;
                s->stop = false;
                s->sending = 0;
                /* What the ring holds is the parent's to send; so is
                 * the memfd of a large line, duplicated here by fork. */
                s->head = s->tail = s->used = 0;
                shim_forget_big_locked(s);
                s->unreported = 0;
                /* Own socket, own credentials (the daemon counts drops
                 * per pid). */
                if (s->fd >= 0)
                        close(s->fd);
                s->fd = -1;
                s->connected = false;
                s->next_connect_ms = 0;
                pthread_mutex_unlock(&s->lock);
        }
        pthread_mutex_unlock(&registry_lock);
}

void shim_count_drop_locked(struct segops_shim *s, uint64_t n)
{
        __atomic_store_n(&s->dropped, s->dropped + n, __ATOMIC_RELAXED);
        s->unreported += n;
}

static void registry_init(void)
{
        (void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int set_addr(struct sockaddr_un *a, socklen_t *ret_len, const char *path, size_t n)
{
        if (n == 0 || n >= sizeof(a->sun_path))
                return -EINVAL;
        memset(a, 0, sizeof(*a));
        a->sun_family = AF_UNIX;
        memcpy(a->sun_path, path, n);
        *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
}

/* SEGOPS_SHIM_BUFFER_BYTES, clamped; the default when unset or bad. */
static size_t buffer_size(void)
{
        const char *v = secure_getenv("SEGOPS_SHIM_BUFFER_BYTES");
        unsigned long long x;
        char *end;

        if (!v || !*v)
                return SHIM_BUFFER_DEFAULT;
        errno = 0;
        x = strtoull(v, &end, 10);
        if (errno || end == v || *end)
                return SHIM_BUFFER_DEFAULT;
        if (x < SHIM_BUFFER_MIN)
                return SHIM_BUFFER_MIN;
        if (x > SHIM_BUFFER_MAX)
                return SHIM_BUFFER_MAX;
        return (size_t)x;
}

/* The events socket: the argument, else $SEGOPS_SOCKET, else the
 * default. */
static const char *events_path(const char *socket_path)
{
        const char *path = socket_path;

        if (!path)
                path = secure_getenv("SEGOPS_SOCKET");
        if (!path || !*path)
                path = "/run/segopsd/events.sock";
        return path;
}

/* The control socket: $SEGOPS_CONTROL_SOCKET, else segopsd.sock in the
 * events socket's directory, built in buf (size bytes). NULL when that
 * does not fit. */
static const char *control_path(const char *events, char *buf, size_t size)
{
        static const char base[] = "segopsd.sock";
        const char *ctl = secure_getenv("SEGOPS_CONTROL_SOCKET"), *slash;
        size_t dl;

        if (ctl && *ctl)
                return ctl;
        slash = strrchr(events, '/');
        dl = slash ? (size_t)(slash - events) + 1 : 0;
        if (dl + sizeof(base) > size)
                return NULL;
        memcpy(buf, events, dl);
        memcpy(buf + dl, base, sizeof(base));
        return buf;
}

/* Both socket addresses of a new handle: 0, or -EINVAL when a path is
 * empty or too long for a socket address. */
static int set_addrs(struct segops_shim *s, const char *socket_path)
{
        char buf[sizeof(s->ctl_addr.sun_path) + 16];
        const char *path = events_path(socket_path), *ctl;
        int r;

        r = set_addr(&s->addr, &s->addr_len, path, strlen(path));
        if (r < 0)
                return r;
        ctl = control_path(path, buf, sizeof(buf));
        if (!ctl)
                return -EINVAL;
        return set_addr(&s->ctl_addr, &s->ctl_addr_len, ctl, strlen(ctl));
}

static void registry_add(struct segops_shim *s)
{
        pthread_once(&registry_once, registry_init);
        pthread_mutex_lock(&registry_lock);
        s->next = registry;
        registry = s;
        pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(struct segops_shim *s)
{
        struct segops_shim **pp;

        pthread_mutex_lock(&registry_lock);
        for (pp = &registry; *pp; pp = &(*pp)->next) {
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        }
        pthread_mutex_unlock(&registry_lock);
}

static int open_impl(segops_shim **ret, const char *socket_path)
{
        struct segops_shim *s;
        int r;

        if (!ret)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->fd = -1;
        s->big_fd = -1;
        s->down_err = -ENOTCONN;
        r = set_addrs(s, socket_path);
        if (r < 0)
                goto fail;
        s->ring_size = buffer_size();
        /* Untouched pages cost no memory: the ring is as large as a burst
         * needs, but resident only as far as bursts actually reach. */
        s->ring = malloc(s->ring_size);
        if (!s->ring || pthread_mutex_init(&s->lock, NULL) != 0) {
                r = -ENOMEM;
                goto fail;
        }
        init_conds(s);
        registry_add(s);
        *ret = s;
        return 0;
fail:
        free(s->ring);
        free(s);
        return r;
}

EXPORT int segops_shim_open(segops_shim **ret, const char *socket_path)
{
        int saved = errno, r;

        r = open_impl(ret, socket_path);
        errno = saved;
        return r;
}

/* Hand one encoded line over to the ring, whatever its size: the
 * sender thread packs small lines into datagrams and sends one too large
 * for a datagram as a sealed memfd, in order. Counts the drop on
 * failure. */
static int submit(struct segops_shim *s, struct shim_line *l)
{
        int r;

        pthread_mutex_lock(&s->lock);
        r = shim_connect_locked(s);
        if (r == 0)
                r = shim_enqueue_locked(s, l->p, l->len);
        if (r < 0 && r != -EMSGSIZE) /* EMSGSIZE: nothing was accepted */
                shim_count_drop_locked(s, 1);
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* A queuing call (track, identify, set_user, reset_session) in two
 * halves around its encoder: the line is built in buf, on the caller's
 * stack, so the common call allocates nothing, and the caller's errno is
 * given back at the end. */
struct call {
        struct shim_line line;
        int saved_errno;
        char buf[SHIM_STACK_LINE];
};

/* Start a call: returns the line for its encoder. */
static struct shim_line *call_begin(struct call *c)
{
        c->saved_errno = errno;
        shim_line_init(&c->line, c->buf, sizeof(c->buf));
        return &c->line;
}

/* End a call whose encoder returned r: submit the line, or count an
 * allocation failure as a drop; returns the call's result. */
static int call_end(struct segops_shim *s, struct call *c, int r)
{
        if (r == 0) {
                r = submit(s, &c->line);
        } else if (r == -ENOMEM) {
                /* An allocation failure loses a valid event: a drop. */
                pthread_mutex_lock(&s->lock);
                shim_count_drop_locked(s, 1);
                pthread_mutex_unlock(&s->lock);
        }
        shim_line_free(&c->line);
        errno = c->saved_errno;
        return r;
}

/* s is checked by the callers. A static function, not a call of the
 * exported segops_track_at, which would go through the PLT. */
static int track_impl(segops_shim *s, const char *user_id, const char *event_type,
                      int64_t occurred_at_ms, const char *payload_json)
{
        struct call c;

        return call_end(s, &c,
                        shim_encode_track(call_begin(&c), user_id, event_type, occurred_at_ms,
                                          payload_json));
}

EXPORT int segops_track_at(segops_shim *s, const char *user_id, const char *event_type,
                           int64_t occurred_at_ms, const char *payload_json)
{
        if (!s)
                return -EINVAL;
        return track_impl(s, user_id, event_type, occurred_at_ms, payload_json);
}

/* occurred_at is stamped here, not left to the daemon: the line may
 * wait in the ring while the daemon catches up. */
EXPORT int segops_track(segops_shim *s, const char *user_id, const char *event_type,
                        const char *payload_json)
{
        if (!s)
                return -EINVAL;
        return track_impl(s, user_id, event_type, shim_clock_ms(CLOCK_REALTIME), payload_json);
}

EXPORT int segops_identify(segops_shim *s, const char *user_id, const char *traits_json)
{
        struct call c;

        if (!s)
                return -EINVAL;
        return call_end(s, &c,
                        shim_encode_identify(call_begin(&c), user_id, shim_clock_ms(CLOCK_REALTIME),
                                             traits_json));
}

EXPORT int segops_set_user(segops_shim *s, const char *user_id, const char *user_id_sig)
{
        struct call c;

        if (!s)
                return -EINVAL;
        return call_end(s, &c, shim_encode_set_user(call_begin(&c), user_id, user_id_sig));
}

EXPORT int segops_reset_session(segops_shim *s)
{
        struct call c;

        if (!s)
                return -EINVAL;
        return call_end(s, &c, shim_encode_reset_session(call_begin(&c)));
}

EXPORT int segops_flush(segops_shim *s, int timeout_ms)
{
        int saved = errno, r;
        int64_t deadline;

        if (!s || timeout_ms < 0 || timeout_ms > 3600000)
                return -EINVAL;
        deadline = shim_now_ms() + timeout_ms;
        pthread_mutex_lock(&s->lock);
        if (s->used > 0 && !s->connected && s->fd < 0)
                (void)shim_connect_locked(s);
        r = shim_wait_drained_locked(s, deadline);
        if (r == -ETIMEDOUT && !s->connected)
                r = s->down_err; /* held back because the daemon is gone */
        pthread_mutex_unlock(&s->lock);
        if (r == 0)
                r = shim_control(s, true, deadline);
        else
                (void)shim_control(s, false, deadline); /* drops, at least */
        errno = saved;
        return r;
}

EXPORT uint64_t segops_dropped(const segops_shim *s)
{
        if (!s)
                return 0;
        return __atomic_load_n(&s->dropped, __ATOMIC_RELAXED);
}

EXPORT void segops_shim_close(segops_shim *s)
{
        int saved = errno;

        if (!s)
                return;
        registry_remove(s);

        pthread_mutex_lock(&s->lock);
        (void)shim_wait_drained_locked(s, shim_now_ms() + SHIM_CLOSE_WAIT_MS);
        shim_stop_thread_locked(s);
        /* What is left after the bounded wait is lost: counted, so the
         * report below tells the daemon. */
        shim_count_drop_locked(s, shim_count_lines_locked(s, s->used));
        s->used = 0;
        shim_forget_big_locked(s);
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
        pthread_mutex_unlock(&s->lock);
        /* Best effort, bounded, and free when nothing was dropped. */
        (void)shim_control(s, false, shim_now_ms() + SHIM_CLOSE_REPORT_MS);
        pthread_cond_destroy(&s->wake);
        pthread_cond_destroy(&s->drained);
        pthread_mutex_destroy(&s->lock);
        free(s->ring);
        free(s);
        errno = saved;
}
