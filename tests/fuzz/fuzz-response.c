/* fuzz-response.c - libFuzzer target for what daemon/response.c reads
 * from the upstream: a Retry-After value (resp_retry_after), a session
 * mint's answer (resp_parse_mint) and an events answer's counts
 * (resp_parse_counts); and the verdict tables fed answers built from
 * the input. Every input is given to each: as a header value up to its
 * first NUL (headers hold none), and whole as a body.
 *
 * Invariants: Retry-After is -1 or a finite whole number of seconds
 * (below ~1e10 when the value is digits; a date may be far ahead); an HTTP date built from the input's
 * first bytes reads back as its distance from now; a token taken is
 * 1-4096 characters of visible ASCII with 0 < expires_in < 1e7; counts
 * are never negative duplicates, and a partial delivery is one where
 * they add up to fewer than the batch; a 2xx is always delivered and
 * nothing but a 413 splits or drops as too large; a Retry-After pause
 * only comes with a Retry-After, and backoff_retry_after_ms honours
 * its cap.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW ((time_t)1795755600) /* 2026-11-27T05:00:00Z */

static void retry_after(const char *v)
{
        double s = resp_retry_after(v, NOW);
        double cap = 300;

        assert(s == -1 || (s >= 0 && isfinite(s)));
        if (s >= 0 && v[strspn(v, " \t")] >= '0' && v[strspn(v, " \t")] <= '9')
                assert(s < RESP_RETRY_AFTER_MAX_S * 10 + 10);
        if (s >= 0) {
                assert(s == floor(s));
                assert(backoff_retry_after_ms(s, cap) <= (uint64_t)(cap * 1000));
        }
}

/* An IMF-fixdate (RFC 9110 5.6.7) some seconds from now reads back. */
static void http_date(const uint8_t *data, size_t size)
{
        static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        uint32_t ahead = 0;
        char v[64];
        struct tm tm;
        time_t t;

        memcpy(&ahead, data, size < 4 ? size : 4);
        ahead %= 10u * 365 * 86400;
        t = NOW + (time_t)ahead;
        gmtime_r(&t, &tm);
        snprintf(v, sizeof(v), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                 months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        assert(resp_retry_after(v, NOW) == (double)ahead);
}

static void mint(const char *body, size_t n)
{
        char *tok = NULL;
        double secs = 0;
        size_t len;

        if (resp_parse_mint(body, n, &tok, &secs) < 0) {
                assert(tok == NULL);
                return;
        }
        len = strlen(tok);
        assert(len >= 1 && len <= RESP_TOKEN_MAX);
        for (size_t i = 0; i < len; i++)
                assert(tok[i] > 0x20 && tok[i] < 0x7f);
        assert(secs > 0 && secs < 1e7);
        free(tok);
}

static void counts(const char *body, size_t n, uint32_t events)
{
        int64_t acc, dups;
        bool partial = resp_parse_counts(body, n, events, &acc, &dups);

        assert(acc >= -1 && dups >= 0);
        if (partial)
                assert(acc >= 0 && acc < (int64_t)events);
}

/* resp_judge and resp_judge_mint on an answer made of input bytes. */
static void judge(const uint8_t *data, size_t size)
{
        uint8_t b[8] = { 0 };
        struct resp_in in;
        struct resp_verdict v;
        enum mint_action m;

        memcpy(b, data, size < sizeof(b) ? size : sizeof(b));
        memset(&in, 0, sizeof(in));
        in.status = (long)(b[0] | b[1] << 8) - 100; /* -100 .. 65435 */
        in.tls_error = b[2] & 1;
        in.retry_after = b[2] & 2 ? -1 : b[3];
        in.events = b[4];
        in.session = b[2] & 4;
        in.reminted = b[2] & 8;
        in.key_replaced = b[2] & 16;
        in.dry_run = b[2] & 32;
        v = resp_judge(&in);
        assert(upstream_state_name(v.state) != NULL);
        if (in.status >= 200 && in.status < 300)
                assert(v.action == RESP_DELIVERED);
        if (v.action == RESP_SPLIT || v.action == RESP_DROP_TOO_LARGE)
                assert(in.status == 413 && !in.dry_run);
        if (v.action == RESP_PAUSE)
                assert(in.retry_after >= 0);
        if (v.forget_token)
                assert(in.session && in.status == 401);
        m = resp_judge_mint(in.status, in.retry_after);
        if (m == MINT_PAUSE)
                assert(in.retry_after >= 0);
        if (m == MINT_TAKE_TOKEN)
                assert(in.status >= 200 && in.status < 300);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* Exact-size copies, so the sanitizers catch a read past them. */
        char *value = malloc(size + 1), *body = malloc(size ? size : 1);

        if (value && body) {
                memcpy(value, data, size);
                value[size] = '\0';
                retry_after(value);
                memcpy(body, data, size);
                mint(body, size);
                counts(body, size, size ? data[0] : 0);
                counts(body, size, 500);
        }
        free(value);
        free(body);
        http_date(data, size);
        judge(data, size);
        return 0;
}
