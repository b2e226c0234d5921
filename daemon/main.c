/* main.c - segopsd's entry point: command line, start-up, the loop,
 * and the clean stop.
 *
 * Start-up: read and check the config, find the key, bind the sockets,
 * tell systemd we are ready. Stop (SIGTERM/SIGINT): stop reading after
 * draining what the sockets already hold, send everything for up to
 * stop_timeout, count what is left as lost (memory-only mode), close
 * every handle, and require uv_loop_close() == 0 so a leaked handle is
 * a bug we see.
 */
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <curl/curl.h>

#include "apikey.h"
#include "clock.h"
#include "conn.h"
#include "daemon.h"
#include "dgram.h"
#include "listen.h"
#include "log.h"
#include "reload.h"
#include "rng.h"
#include "spool.h"
#include "urlshow.h"

#define STOP_POLL_MS 20

struct runtime {
        struct daemon d;
        uv_signal_t sig_term, sig_int, sig_hup;
        uv_timer_t stop_timer; /* polls for "all sent" during a stop */
        uv_timer_t watchdog;
        uv_timer_t grace; /* last replies' time to leave at the end */
        uint64_t stop_deadline;
        int exit_code;
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: segopsd [OPTIONS]\n"
                   "\n"
                   "Receive analytics events on local Unix sockets and forward them to SegOps.\n"
                   "\n"
                   "  -c, --config FILE    configuration file (default " CFG_DEFAULT_PATH ")\n"
                   "      --check-config   check the configuration and the key, then exit\n"
                   "  -h, --help           show this help\n"
                   "  -V, --version        show the version\n"
                   "\n"
                   "Runs in the foreground. SIGTERM/SIGINT stop it cleanly (events still held are\n"
                   "sent for up to stop_timeout seconds); SIGHUP reloads the config (see "
                   "segopsd(8)).\n");
}

static void close_walk(uv_handle_t *h, void *arg)
{
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

/* stop_grace ended with connections still open (a client that does
 * not read its replies): close them, written or not. */
static void on_grace(uv_timer_t *t)
{
        struct runtime *rt = t->data;
        unsigned n = conn_server_abort(&rt->d);

        if (n)
                log_warn("closed %u control connection%s with replies unread at the end of "
                         "the stop (stop_grace)",
                         n, n == 1 ? "" : "s");
}

/* The signal handles stay installed until the process exits: closing
 * them would give the signals their default action back, and a SIGHUP
 * (logrotate) or a second Ctrl-C in the last moments would kill segopsd
 * with replies still to write. Unreferenced, they no longer keep the
 * loop alive: the stop ends as soon as the last connection is done. */
static void release_signals(struct runtime *rt)
{
        uv_unref((uv_handle_t *)&rt->sig_term);
        uv_unref((uv_handle_t *)&rt->sig_int);
        uv_unref((uv_handle_t *)&rt->sig_hup);
}

/* The loop has ended: from here to exit, a late signal is held pending
 * (blocked) instead of taking its default action, which closing the
 * libuv handles would restore. */
static void block_stop_signals(void)
{
        sigset_t set;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* "10 delivered, 2 refused by the upstream (2 upstream_rejected), 4 lost
 * (4 shutdown)": what became of the events accepted since start. The
 * upstream refuses (upstream_rejected, too_large); every other drop is
 * a loss here (memory_full, spool_full, spool_corrupt, shutdown). */
static void stop_counts(const struct stats *st, char *out, size_t outlen)
{
        uint64_t refused[DROP_REASON_COUNT] = { 0 }, lost[DROP_REASON_COUNT];
        char rtext[160], ltext[200];
        uint64_t nref, nlost;
        size_t o;

        memcpy(lost, st->dropped, sizeof(lost));
        refused[DROP_UPSTREAM_REJECTED] = lost[DROP_UPSTREAM_REJECTED];
        refused[DROP_TOO_LARGE] = lost[DROP_TOO_LARGE];
        lost[DROP_UPSTREAM_REJECTED] = lost[DROP_TOO_LARGE] = 0;
        nref = stats_drops_text(refused, rtext, sizeof(rtext));
        nlost = stats_drops_text(lost, ltext, sizeof(ltext));
        if (nref)
                snprintf(out, outlen, "%llu delivered, %llu refused by the upstream (%s), ",
                         (unsigned long long)st->sent, (unsigned long long)nref, rtext);
        else
                snprintf(out, outlen, "%llu delivered, ", (unsigned long long)st->sent);
        o = strlen(out);
        if (nlost)
                snprintf(out + o, outlen - o, "%llu lost (%s)", (unsigned long long)nlost, ltext);
        else
                snprintf(out + o, outlen - o, "0 lost");
}

/* The last line of a run: what became of the accepted events, in
 * numbers by reason after "since start:". Lost events are logged at
 * priority crit, so that they can be found once the process is gone
 * (journalctl -u segopsd -p crit); other drops at warning. */
static void report_stop(const struct daemon *d, bool spooled, uint64_t lost, uint64_t kept)
{
        char counts[512];
        bool dropped = false;

        for (int i = 0; i < DROP_REASON_COUNT; i++)
                dropped = dropped || d->stats.dropped[i];
        stop_counts(&d->stats, counts, sizeof(counts));
        if (lost)
                log_msg(LOG_CRIT,
                        "stopped: %llu events could not be delivered %s and are lost (%s); "
                        "since start: %s",
                        (unsigned long long)lost,
                        d->key.missing ? "without an API key" : "before stop_timeout",
                        spooled ? "the spool could not take them" : "no spool_dir: memory-only",
                        counts);
        else if (kept)
                log_msg(dropped ? LOG_WARNING : LOG_INFO,
                        "stopped: %llu events wait in the spool and are sent after the next "
                        "start; since start: %s",
                        (unsigned long long)kept, counts);
        else if (dropped)
                log_warn("stopped: every event still held was delivered; since start: %s", counts);
        else
                log_info("stopped: every accepted event was delivered; since start: %s", counts);
}

static void finish_stop(struct runtime *rt)
{
        struct daemon *d = &rt->d;
        bool spooled = d->spool != NULL; /* closed below, before the report */
        uint64_t lost, held;

        /* Datagrams the stop could not read in time are counted and
         * let go; no more events come in after this. */
        dgram_close_now(d);
        /* Requests in flight are aborted first: their callbacks get no
         * answer (and judge nothing), and no request uses a batch's body
         * once the batcher frees it. */
        fwd_close(&d->fwd);
        status_stop(d);
        batcher_commit(&d->batcher);
        held = batcher_held(&d->batcher);
        lost = batcher_close(&d->batcher);
        spool_close(d->spool); /* what is left is on disk, and the checkpoint */
        d->spool = NULL;
        session_close(&d->session);
        /* Connections still open get a moment to write their last
         * replies (a flush's answer), then are closed regardless; the
         * loop ends as soon as they are done (the grace timer is
         * unreferenced), not when the grace ends. */
        uv_timer_start(&rt->grace, on_grace, (uint64_t)(d->cfg.stop_grace * 1000.0), 0);
        release_signals(rt);
        if (rt->exit_code == 0)
                report_stop(d, spooled, lost, held - lost);
        uv_close((uv_handle_t *)&rt->stop_timer, NULL);
        uv_close((uv_handle_t *)&rt->watchdog, NULL);
}

static void on_stop_poll(uv_timer_t *t)
{
        struct runtime *rt = t->data;

        /* A flush's answer comes a turn after its events were
         * delivered, and the lines its client sent after it are read
         * only then (resume): until then the batcher may be idle with
         * more to come. Without a key nothing can be sent: the stop
         * ends once the sockets are drained. */
        if ((!dgram_closing(&rt->d) &&
             ((batcher_idle(&rt->d.batcher) && !conn_server_flushing(&rt->d)) ||
              rt->d.key.missing)) ||
            uv_now(rt->d.loop) >= rt->stop_deadline)
                finish_stop(rt);
}

static void begin_stop(struct runtime *rt)
{
        struct daemon *d = &rt->d;

        if (d->stopping)
                return;
        d->stopping = true;
        sd_notify(0, "STOPPING=1");
        log_info("stopping: draining the sockets and sending what is held (up to %g s)",
                 d->cfg.stop_timeout);
        dgram_close(d);
        conn_server_close(d);
        batcher_drain(&d->batcher);
        rt->stop_deadline = uv_now(d->loop) + (uint64_t)(d->cfg.stop_timeout * 1000.0);
        uv_timer_start(&rt->stop_timer, on_stop_poll, 0, STOP_POLL_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
        struct runtime *rt = h->data;

        if (signum == SIGHUP) {
                if (!rt->d.stopping) /* stopping: nothing left to reload for */
                        (void)daemon_reload(&rt->d);
                return;
        }
        begin_stop(rt);
}

static void on_watchdog(uv_timer_t *t)
{
        sd_notify(0, "WATCHDOG=1");
}

/* Read, check and complete the config, and load the key. Errors and
 * warnings go through the log front end (started with defaults before
 * this), so under systemd they carry their priority: <3> for the error
 * that stops the start, <4> for a warning. --check-config shows the
 * same warnings as a start. Returns the warnings given, or a negative
 * errno. */
static int load_config(struct daemon *d, const char *path)
{
        char err[1024];
        bool credential = false;
        int r, warnings = 0;

        cfg_defaults(&d->cfg);
        r = cfg_load(&d->cfg, path, err, sizeof(err));
        if (r == 0)
                r = cfg_validate(&d->cfg, err, sizeof(err));
        if (r == 0)
                r = apikey_load_from(&d->cfg, &d->key.secret, &credential, err, sizeof(err));
        if (r < 0) {
                log_err("%s", err);
                return r;
        }
        apikey_redact(d->key.secret, d->key.redacted, sizeof(d->key.redacted));
        d->key.missing = !d->key.secret && strcmp(d->cfg.api_url, "stdout") != 0;
        if (d->key.missing) {
                apikey_missing_hint(&d->cfg, credential, err, sizeof(err));
                log_warn("%s", err);
                warnings++;
        }
        if (d->key.secret && !credential && apikey_file_warning(&d->cfg, err, sizeof(err))) {
                log_warn("%s", err);
                warnings++;
        }
        if (cfg_url_insecure(&d->cfg)) { /* allowed, or cfg_validate had refused it */
                log_warn("%s: [upstream] api_url is http:// to another host: the API key and "
                         "the events cross the network in clear text (allow_insecure_http = yes)",
                         path);
                warnings++;
        }
        if (d->cfg.api_key && !getenv("CREDENTIALS_DIRECTORY") && !d->cfg.api_key_file) {
                log_warn("%s: the API key is written in the config file; prefer api_key_file "
                         "or a systemd credential",
                         path);
                warnings++;
        }
        return warnings;
}

static void start_watchdog(struct runtime *rt)
{
        uint64_t usec = 0;

        uv_timer_init(rt->d.loop, &rt->watchdog);
        if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000)
                uv_timer_start(&rt->watchdog, on_watchdog, usec / 2000, usec / 2000);
}

static const char *origin(bool adopted)
{
        return adopted ? "adopted from systemd" : "bound";
}

static void print_hello(const struct daemon *d)
{
        char url[256];

        (void)urlshow_strip(d->cfg.api_url, url, sizeof(url));
        log_info("segopsd %s ready: events socket %s (%s), control socket %s (%s), upstream %s, "
                 "key %s",
                 SEGOPS_VERSION, d->cfg.events_socket, origin(dgram_adopted(d)),
                 d->cfg.control_socket, origin(conn_server_adopted(d)), url, d->key.redacted);
        log_info("send a first event: echo '{\"user_id\":\"u1\",\"event_type\":\"hello\"}' | "
                 "socat -u - UNIX-SENDTO:%s",
                 d->cfg.events_socket);
}

static int post_upstream(void *ctx, const struct fwd_post *p, fwd_done_fn cb, void *ud)
{
        return fwd_start(ctx, p, cb, ud);
}

static void session_ready(void *ud)
{
        batcher_wake(ud);
}

static uint64_t session_held(void *ud)
{
        return batcher_held(ud);
}

/* Who talks to whom: the session mints through the forwarder and wakes
 * the batcher; the batcher sends through the forwarder with the
 * session's bearer; ingest feeds the batcher. */
static void wire(struct daemon *d)
{
        const struct session_io io = {
                .post = post_upstream,
                .ctx = &d->fwd,
                .ready = session_ready,
                .ud = &d->batcher,
                .held = session_held,
        };
        bool pk = d->key.secret && strncmp(d->key.secret, "pk_", 3) == 0;

        session_init(&d->session, d->loop, &d->cfg, &d->key, pk && !fwd_dry_run(&d->fwd), &io);
        batcher_init(&d->batcher, d->loop, &d->cfg, &d->stats, &d->key, &d->fwd, &d->session,
                     d->spool);
        ingest_init(&d->ingest, &d->cfg, &d->stats, &d->batcher);
}

static int run(struct runtime *rt)
{
        struct daemon *d = &rt->d;
        int r;

        d->loop = uv_default_loop();
        d->start_ms = clock_wall_ms();
        {
                char err[1024];

                /* Before anything is bound or opened. */
                r = listen_check_passed(d->cfg.events_socket, d->cfg.control_socket, err,
                                        sizeof(err));
                if (r < 0) {
                        log_err("%s", err);
                        return r;
                }
        }
        if (d->cfg.spool_dir) {
                char err[512];

                r = spool_open(&d->spool, d->loop, &d->cfg, err, sizeof(err));
                if (r < 0) {
                        log_err("%s", r == -ENOMEM ? "out of memory" : err);
                        return r;
                }
        }
        r = fwd_init(&d->fwd, d->loop, &d->cfg);
        if (r < 0) {
                log_err("cannot initialise HTTP: %s", strerror(-r));
                spool_close(d->spool);
                d->spool = NULL;
                return r;
        }
        wire(d);
        status_start(d);
        uv_timer_init(d->loop, &rt->stop_timer);
        rt->stop_timer.data = rt;
        uv_timer_init(d->loop, &rt->grace);
        rt->grace.data = rt;
        /* The grace only bounds how long open connections may keep the
         * loop alive at the end of a stop; it never does so itself. */
        uv_unref((uv_handle_t *)&rt->grace);
        start_watchdog(rt);
        uv_signal_init(d->loop, &rt->sig_term);
        uv_signal_init(d->loop, &rt->sig_int);
        uv_signal_init(d->loop, &rt->sig_hup);
        rt->sig_term.data = rt->sig_int.data = rt->sig_hup.data = rt;
        uv_signal_start(&rt->sig_term, on_signal, SIGTERM);
        uv_signal_start(&rt->sig_int, on_signal, SIGINT);
        uv_signal_start(&rt->sig_hup, on_signal, SIGHUP);

        r = dgram_open(d);
        if (r == 0)
                r = conn_server_open(d);
        if (r < 0) {
                rt->exit_code = 1;
                dgram_close(d);
                conn_server_close(d);
                d->stopping = true;
                finish_stop(rt);
        } else {
                sd_notify(0, "READY=1");
                print_hello(d);
        }
        uv_run(d->loop, UV_RUN_DEFAULT);
        block_stop_signals();

        /* Anything still open is a leak; close it so the loop can end. */
        uv_walk(d->loop, close_walk, NULL);
        uv_run(d->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(d->loop) != 0) {
                log_err("internal error: handles left open at exit");
                return -EBUSY;
        }
        return r;
}

/* A batch body of 500 events of ~240 B is 120-130 KiB, around glibc's
 * 128 KiB mmap threshold: each one was mmap'd, faulted in page by page,
 * mremap'd by the shrink at batch_ready() and munmap'd when delivered,
 * and because the shrink takes it under the threshold, glibc never
 * raises its threshold by itself as it would for a plain free. In
 * bench/ that was a third of segopsd's CPU replaying a spool backlog
 * (1.3-1.5 -> 0.7-0.9 s per million events) and ~0.7 s per million on
 * the datagram path, spool or not. Bodies up to max_batch_bytes (1M)
 * now come from the heap; memory bounds are max_memory's as before. */
static void tune_malloc(void)
{
#ifdef M_MMAP_THRESHOLD
        (void)mallopt(M_MMAP_THRESHOLD, 1024 * 1024 + 4096);
#endif
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 'C' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { NULL, 0, NULL, 0 },
        };
        static struct runtime rt;
        const char *path = CFG_DEFAULT_PATH;
        bool check_only = false;
        int c, r;

        tune_malloc();
        /* Until the config sets them: level info, no rate limit. */
        log_init(CFG_LOG_INFO, 0);
        while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
                switch (c) {
                case 'c': path = optarg; break;
                case 'C': check_only = true; break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("segopsd %s\n", SEGOPS_VERSION); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind < argc) {
                log_err("unexpected argument '%s'", argv[optind]);
                usage(stderr);
                return 2;
        }
        r = load_config(&rt.d, path);
        if (r < 0)
                return 1;
        if (check_only) {
                printf("%s: configuration OK (key %s)%s\n", path, rt.d.key.redacted,
                       r == 0   ? ""
                       : r == 1 ? ", with the warning above"
                                : ", with the warnings above");
                goto out;
        }
        signal(SIGPIPE, SIG_IGN);
        /* It holds the API key (and session tokens): no core dumps, and
         * no ptrace or /proc/PID/mem for other processes of its user. */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        log_init(rt.d.cfg.log_level, rt.d.cfg.log_rate);
        r = rng_init();
        if (r < 0) {
                log_err("cannot seed the random generator: %s", strerror(-r));
                rt.exit_code = 1;
                goto out;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                log_err("cannot initialise libcurl");
                rt.exit_code = 1;
                goto out;
        }
        r = run(&rt);
        if (r < 0 && rt.exit_code == 0)
                rt.exit_code = 1;
        curl_global_cleanup();
out:
        ingest_free(&rt.d.ingest);
        if (rt.d.key.secret) {
                explicit_bzero(rt.d.key.secret, strlen(rt.d.key.secret));
                free(rt.d.key.secret);
        }
        cfg_free(&rt.d.cfg);
        return rt.exit_code;
}
