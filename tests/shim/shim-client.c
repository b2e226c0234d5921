/* shim-client.c - a test program linked against the *installed*
 * libsegops-shim (tests/integration/test_shim.py builds it with the
 * pkg-config line an application would use). One mode per test case;
 * the socket paths come from $SEGOPS_SOCKET / $SEGOPS_CONTROL_SOCKET.
 * Where the test must act in between (start or restart the daemon) the
 * program prints "WAIT <what>" and reads one line from stdin.
 *
 * malloc, calloc, realloc and free are interposed here (forwarding to
 * glibc's __libc_* entry points) so the "alloc" mode can count every
 * heap allocation the library makes per call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <segops/shim.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static unsigned long n_allocs;

void *malloc(size_t n)
{
        __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
        return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
        __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
        return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
        __atomic_add_fetch(&n_allocs, 1, __ATOMIC_RELAXED);
        return __libc_realloc(p, n);
}

void free(void *p)
{
        __libc_free(p);
}

static segops_shim *shim;

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void wait_for(const char *what)
{
        char line[64];

        printf("WAIT %s\n", what);
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin))
                exit(3);
}

static int track_i(const char *type, int t, long i)
{
        char payload[96];

        snprintf(payload, sizeof(payload), "{\"t\":%d,\"i\":%ld,\"pid\":%d}", t, i, (int)getpid());
        return segops_track(shim, "u1", type, payload);
}

struct burst_arg {
        int t;
        long n;
        long fails;
};

static void *burst_thread(void *p)
{
        struct burst_arg *a = p;
        long i;

        for (i = 0; i < a->n; i++)
                if (track_i("burst", a->t, i) != 0)
                        a->fails++;
        return NULL;
}

/* burst THREADS N: every thread tracks N events as fast as it can. */
static int mode_burst(int threads, long n)
{
        pthread_t th[64];
        struct burst_arg args[64];
        long fails = 0;
        int i, r;

        if (threads < 1 || threads > 64)
                return 2;
        for (i = 0; i < threads; i++) {
                args[i] = (struct burst_arg){ .t = i, .n = n };
                pthread_create(&th[i], NULL, burst_thread, &args[i]);
        }
        for (i = 0; i < threads; i++) {
                pthread_join(th[i], NULL);
                fails += args[i].fails;
        }
        r = segops_flush(shim, 60000);
        printf("fails=%ld dropped=%" PRIu64 " flush=%d\n", fails, segops_dropped(shim), r);
        return 0;
}

/* This thread's voluntary (it waited: a syscall that sleeps, a lock)
 * and involuntary (the scheduler took the CPU away) context switches. */
static void thread_switches(long *vol, long *invol)
{
        struct rusage ru;

        getrusage(RUSAGE_THREAD, &ru);
        *vol = ru.ru_nvcsw;
        *invol = ru.ru_nivcsw;
}

/* absent N: the daemon is down; N calls must fail fast, then the test
 * starts the daemon and the shim must resume and report its drops.
 * worst_us is the slowest call; own_us the slowest one the scheduler
 * did not interrupt (an involuntary switch and no voluntary one): on a
 * loaded machine a call can lose the CPU for tens of milliseconds
 * without blocking, while a call that waits shows a voluntary switch
 * and counts. avg_ns is the mean time inside the calls the scheduler
 * did not interrupt (one preempted call of 80 ms in 2,000 would add 40 µs
 * to a mean of them all). */
static int mode_absent(long n)
{
        double worst = 0, own = 0, own_total = 0;
        long i, bad = 0, ok = 0, preempted = 0;
        int r = 0;

        for (i = 0; i < n; i++) {
                long v0, i0, v1, i1;
                double a, d;

                thread_switches(&v0, &i0);
                a = now_s();
                r = track_i("absent", 0, i);
                d = now_s() - a;
                thread_switches(&v1, &i1);
                if (d > worst)
                        worst = d;
                if (v1 == v0 && i1 != i0) {
                        preempted++;
                } else {
                        own_total += d;
                        if (d > own)
                                own = d;
                }
                if (r != -ENOTCONN)
                        bad++;
        }
        printf("absent bad=%ld worst_us=%.1f own_us=%.1f preempted=%ld avg_ns=%.0f "
               "dropped=%" PRIu64 " flush=%d\n",
               bad, worst * 1e6, own * 1e6, preempted,
               n > preempted ? own_total / (double)(n - preempted) * 1e9 : 0.0,
               segops_dropped(shim), segops_flush(shim, 1000));
        wait_for("start");
        /* The next connect attempt is at most 100 ms away. */
        for (i = 0; i < 400 && ok < 10; i++) {
                r = track_i("resumed", 0, i);
                if (r == 0)
                        ok++;
                else
                        usleep(5000);
        }
        r = segops_flush(shim, 20000);
        printf("resumed ok=%ld dropped=%" PRIu64 " flush=%d\n", ok, segops_dropped(shim), r);
        return 0;
}

/* dropflush N: N events while the daemon is absent, then (once it
 * runs) only a flush: no datagram carries the drop count, so the daemon
 * can only have it from the flush's report on the control socket. */
static int mode_dropflush(long n)
{
        long i, bad = 0;
        int r;

        for (i = 0; i < n; i++)
                bad += track_i("absent", 0, i) != -ENOTCONN;
        printf("absent bad=%ld dropped=%" PRIu64 "\n", bad, segops_dropped(shim));
        wait_for("start");
        r = segops_flush(shim, 20000);
        printf("resumed dropped=%" PRIu64 " flush=%d\n", segops_dropped(shim), r);
        return 0;
}

/* restart: events before, during and after a daemon restart; prints
 * the index of every event the shim accepted. */
static int mode_restart(void)
{
        long i, ok = 0, tries;
        int r;

        for (i = 0; i < 100; i++)
                if (track_i("restart", 0, i) == 0)
                        printf("ok %ld\n", i);
        printf("flush1=%d\n", segops_flush(shim, 20000));
        wait_for("stopped");
        for (i = 100; i < 200; i++) {
                if (track_i("restart", 0, i) == 0)
                        printf("ok %ld\n", i);
                usleep(1000);
        }
        wait_for("started");
        for (tries = 0, i = 200; tries < 2000 && ok < 100; tries++, i++) {
                r = track_i("restart", 0, i);
                if (r == 0) {
                        printf("ok %ld\n", i);
                        ok++;
                } else {
                        usleep(2000);
                }
        }
        r = segops_flush(shim, 20000);
        printf("flush2=%d dropped=%" PRIu64 "\n", r, segops_dropped(shim));
        return 0;
}

/* fork: parent and child both send; the child's events must arrive. */
static int mode_fork(void)
{
        int i, status = 0, fails = 0;
        pid_t pid;

        for (i = 0; i < 50; i++)
                fails += track_i("parent", 0, i) != 0;
        pid = fork();
        if (pid < 0)
                return 2;
        if (pid == 0) {
                for (i = 0; i < 50; i++)
                        fails += track_i("child", 1, i) != 0;
                i = segops_flush(shim, 20000);
                printf("child pid=%d fails=%d flush=%d\n", (int)getpid(), fails, i);
                fflush(stdout);
                segops_shim_close(shim);
                _exit(fails || i ? 1 : 0);
        }
        for (i = 50; i < 100; i++)
                fails += track_i("parent", 0, i) != 0;
        waitpid(pid, &status, 0);
        printf("parent fails=%d flush=%d child_exit=%d\n", fails, segops_flush(shim, 20000),
               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return 0;
}

/* forkcpu N: the child queues N events for an events socket nobody
 * reads (the test binds it), so they cannot drain, then waits in
 * segops_flush(500 ms). The wait must sleep: the child's CPU time over
 * it shows whether its condition variables still use the right clock. */
static int mode_forkcpu(long n)
{
        struct rusage a, b;
        long i, fails = 0, cpu_ms;
        int status = 0, r;
        pid_t pid;

        pid = fork();
        if (pid < 0)
                return 2;
        if (pid == 0) {
                for (i = 0; i < n; i++)
                        fails += track_i("forkcpu", 1, i) != 0;
                getrusage(RUSAGE_SELF, &a);
                r = segops_flush(shim, 500);
                getrusage(RUSAGE_SELF, &b);
                cpu_ms = (b.ru_utime.tv_sec - a.ru_utime.tv_sec + b.ru_stime.tv_sec -
                          a.ru_stime.tv_sec) *
                                 1000 +
                         (b.ru_utime.tv_usec - a.ru_utime.tv_usec + b.ru_stime.tv_usec -
                          a.ru_stime.tv_usec) /
                                 1000;
                printf("child fails=%ld flush=%d cpu_ms=%ld\n", fails, r, cpu_ms);
                fflush(stdout);
                /* No close: it would wait 2 s for a ring that cannot drain. */
                _exit(0);
        }
        waitpid(pid, &status, 0);
        printf("parent child_exit=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return 0;
}

/* flush N: N events then flush; prints FLUSHED once it returned. */
static int mode_flush(long n)
{
        long i, fails = 0;
        int r;

        for (i = 0; i < n; i++)
                fails += track_i("flush", 0, i) != 0;
        r = segops_flush(shim, 20000);
        printf("FLUSHED fails=%ld flush=%d\n", fails, r);
        fflush(stdout);
        wait_for("checked");
        return 0;
}

/* large BYTES: one event whose payload string is BYTES long. */
static int mode_large(long bytes)
{
        char *p = malloc((size_t)bytes + 32);
        int r, r2;

        if (!p)
                return 2;
        memcpy(p, "{\"big\":\"", 8);
        memset(p + 8, 'x', (size_t)bytes);
        memcpy(p + 8 + bytes, "\"}", 3);
        r = segops_track(shim, "u1", "large", p);
        r2 = segops_flush(shim, 20000);
        printf("large r=%d flush=%d dropped=%" PRIu64 "\n", r, r2, segops_dropped(shim));
        free(p);
        return 0;
}

struct mixed_arg {
        int t;
        long sent;
        long fails;
        const int *big_done;
};

/* Small events in bursts of 100 (each burst fills the daemon's socket
 * queue for a moment) until the big sender is done; at most 25000 per
 * thread. With the big ones that is more than the default ring holds:
 * the test sizes the ring (SEGOPS_SHIM_BUFFER_BYTES) so that a daemon
 * short of CPU delays them, never drops them. */
static void *mixed_small(void *p)
{
        struct mixed_arg *a = p;

        for (a->sent = 0; a->sent < 25000; a->sent++) {
                if (a->sent % 100 == 0 && a->sent) {
                        if (__atomic_load_n(a->big_done, __ATOMIC_ACQUIRE))
                                break;
                        usleep(3000);
                }
                if (track_i("small", a->t, a->sent) != 0)
                        a->fails++;
        }
        return NULL;
}

/* mixed N BYTES: 4 threads send small events while this one sends N
 * events with a BYTES long payload string each (over a datagram: the
 * memfd path), one per 3 ms, so the daemon's queue is often full for a
 * moment. With a ring that holds all of it, every call must succeed and
 * everything arrive. */
static int mode_mixed(long n, long bytes)
{
        struct mixed_arg args[4];
        pthread_t th[4];
        long i, big_fails = 0, small_fails = 0, small_sent = 0;
        int big_done = 0, r, k;
        char *p;

        if (n < 1 || bytes < 1 || bytes > 1000000)
                return 2;
        p = malloc((size_t)bytes + 64);
        if (!p)
                return 2;
        for (k = 0; k < 4; k++) {
                args[k] = (struct mixed_arg){ .t = k, .big_done = &big_done };
                pthread_create(&th[k], NULL, mixed_small, &args[k]);
        }
        for (i = 0; i < n; i++) {
                int h = snprintf(p, 64, "{\"i\":%ld,\"big\":\"", i);

                memset(p + h, 'x', (size_t)bytes);
                memcpy(p + h + bytes, "\"}", 3);
                if (segops_track(shim, "u1", "big", p) != 0)
                        big_fails++;
                usleep(3000);
        }
        __atomic_store_n(&big_done, 1, __ATOMIC_RELEASE);
        for (k = 0; k < 4; k++) {
                pthread_join(th[k], NULL);
                small_fails += args[k].fails;
                small_sent += args[k].sent;
        }
        r = segops_flush(shim, 60000);
        printf("mixed big_fails=%ld small_fails=%ld small_sent=%ld "
               "dropped=%" PRIu64 " flush=%d\n",
               big_fails, small_fails, small_sent, segops_dropped(shim), r);
        free(p);
        return 0;
}

/* bigburst N BYTES: flat out from one thread, N times a large event
 * (BYTES of payload: the memfd path) then a small one, then flush. All
 * of it fits the ring, so nothing may be lost however slow the daemon
 * is, and the two kinds must arrive in the order they were sent. */
static int mode_bigburst(long n, long bytes)
{
        long i, fails = 0;
        char *p;
        int r;

        if (n < 1 || bytes < 1 || bytes > 1000000)
                return 2;
        p = malloc((size_t)bytes + 64);
        if (!p)
                return 2;
        for (i = 0; i < n; i++) {
                int h = snprintf(p, 64, "{\"i\":%ld,\"big\":\"", i);

                memset(p + h, 'x', (size_t)bytes);
                memcpy(p + h + bytes, "\"}", 3);
                if (segops_track(shim, "u1", "big", p) != 0)
                        fails++;
                if (track_i("small", 0, i) != 0)
                        fails++;
        }
        r = segops_flush(shim, 60000);
        printf("bigburst fails=%ld dropped=%" PRIu64 " flush=%d\n", fails, segops_dropped(shim), r);
        free(p);
        return 0;
}

/* ops: set_user, reset_session, identify, then an event. */
static int mode_ops(void)
{
        int a = segops_set_user(shim, "alice", "00ff");
        int b = segops_reset_session(shim);
        int c = segops_identify(shim, "alice", "{\"plan\":\"pro\"}");
        int d = segops_track(shim, "alice", "after_ops", NULL);

        printf("ops set_user=%d reset=%d identify=%d track=%d flush=%d\n", a, b, c, d,
               segops_flush(shim, 20000));
        return 0;
}

/* alloc N: heap allocations made by N track() calls after the first. */
static int mode_alloc(long n)
{
        unsigned long before, after;
        long i, fails = 0;

        track_i("alloc", 0, -1); /* the first call starts the thread */
        segops_flush(shim, 20000);
        before = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED);
        for (i = 0; i < n; i++)
                fails += track_i("alloc", 0, i) != 0;
        after = __atomic_load_n(&n_allocs, __ATOMIC_RELAXED);
        printf("allocs=%lu fails=%ld flush=%d\n", after - before, fails, segops_flush(shim, 20000));
        return 0;
}

int main(int argc, char **argv)
{
        const char *mode = argc > 1 ? argv[1] : "";
        long a = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
        long b = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
        int r, ret = 2;

        setvbuf(stdout, NULL, _IOLBF, 0);
        r = segops_shim_open(&shim, NULL);
        if (r < 0) {
                printf("open failed: %d\n", r);
                return 1;
        }
        if (!strcmp(mode, "burst"))
                ret = mode_burst((int)a, b);
        else if (!strcmp(mode, "absent"))
                ret = mode_absent(a);
        else if (!strcmp(mode, "restart"))
                ret = mode_restart();
        else if (!strcmp(mode, "fork"))
                ret = mode_fork();
        else if (!strcmp(mode, "dropflush"))
                ret = mode_dropflush(a);
        else if (!strcmp(mode, "forkcpu"))
                ret = mode_forkcpu(a);
        else if (!strcmp(mode, "flush"))
                ret = mode_flush(a);
        else if (!strcmp(mode, "large"))
                ret = mode_large(a);
        else if (!strcmp(mode, "mixed"))
                ret = mode_mixed(a, b);
        else if (!strcmp(mode, "bigburst"))
                ret = mode_bigburst(a, b);
        else if (!strcmp(mode, "ops"))
                ret = mode_ops();
        else if (!strcmp(mode, "alloc"))
                ret = mode_alloc(a);
        segops_shim_close(shim);
        return ret;
}
