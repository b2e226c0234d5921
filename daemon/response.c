/* response.c - the rows of SPEC section 4's table, in the order a reader
 * checks them. Codes the table does not name (1xx as a final answer,
 * 600 and up) are taken as transient: an upstream that answers
 * nonsense is retried, never trusted to have refused the events. */
#include "response.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

const char *upstream_state_name(enum upstream_state s)
{
        switch (s) {
        case UPSTREAM_IDLE: return "idle";
        case UPSTREAM_OK: return "ok";
        case UPSTREAM_DRY_RUN: return "dry_run";
        case UPSTREAM_RETRYING: return "retrying";
        case UPSTREAM_THROTTLED: return "throttled";
        case UPSTREAM_AUTH_ERROR: return "auth_error";
        case UPSTREAM_TLS_ERROR: return "tls_error";
        case UPSTREAM_REDIRECTED: return "redirected";
        case UPSTREAM_SEND_ERROR: return "send_error";
        case UPSTREAM_NO_KEY: return "no_key";
        }
        return "unknown";
}

static struct resp_verdict act(enum resp_action a)
{
        return (struct resp_verdict){ .action = a };
}

static struct resp_verdict act_in(enum resp_action a, enum upstream_state st)
{
        return (struct resp_verdict){ .action = a, .set_state = true, .state = st };
}

static struct resp_verdict judge_auth(const struct resp_in *in)
{
        struct resp_verdict v;

        /* Sent with the key a reload has replaced since: the answer says
         * nothing about the new one. Again, at once, with it. */
        if (in->key_replaced)
                return act(RESP_RESEND_NOW);
        if (in->session && in->status == 401) {
                /* The token expired or was revoked: a new one is minted
                 * and the batch resent once, at once; a second 401
                 * right after a mint backs off like any refusal. */
                v = in->reminted ? act_in(RESP_BACKOFF, UPSTREAM_AUTH_ERROR) : act(RESP_RESEND_NOW);
                v.forget_token = true;
                return v;
        }
        return act_in(RESP_BACKOFF, UPSTREAM_AUTH_ERROR);
}

struct resp_verdict resp_judge(const struct resp_in *in)
{
        long st = in->status;

        if (in->dry_run)
                return act_in(RESP_DELIVERED, UPSTREAM_DRY_RUN);
        if (st >= 200 && st < 300)
                return act_in(RESP_DELIVERED, UPSTREAM_OK);
        if (st == 0)
                return act_in(RESP_BACKOFF, in->tls_error ? UPSTREAM_TLS_ERROR : UPSTREAM_RETRYING);
        if (st >= 300 && st < 400)
                return act_in(RESP_BACKOFF, UPSTREAM_REDIRECTED);
        if (st == 401 || st == 403)
                return judge_auth(in);
        if (st == 413)
                return act(in->events <= 1 ? RESP_DROP_TOO_LARGE : RESP_SPLIT);
        if (st == 429 || st == 503)
                return act_in(in->retry_after >= 0 ? RESP_PAUSE : RESP_BACKOFF, UPSTREAM_THROTTLED);
        if (st == 408 || st >= 500)
                return act_in(RESP_BACKOFF, UPSTREAM_RETRYING);
        if (st >= 400 && st < 500)
                return act(RESP_DROP_REJECTED);
        return act_in(RESP_BACKOFF, UPSTREAM_RETRYING);
}

enum mint_action resp_judge_mint(long status, double retry_after)
{
        if (status >= 200 && status < 300)
                return MINT_TAKE_TOKEN;
        if (status == 400 || status == 401 || status == 403)
                return MINT_FIX_CONFIG;
        if ((status == 429 || status == 503) && retry_after >= 0)
                return MINT_PAUSE;
        return MINT_BACKOFF;
}

double resp_retry_after(const char *value, time_t now)
{
        const char *v = value;
        double secs = 0;
        time_t when;

        while (*v == ' ' || *v == '\t')
                v++;
        if (*v >= '0' && *v <= '9') {
                for (; *v >= '0' && *v <= '9'; v++)
                        if (secs < RESP_RETRY_AFTER_MAX_S)
                                secs = secs * 10 + (*v - '0');
                while (*v == ' ' || *v == '\t')
                        v++;
                return *v ? -1 : secs;
        }
        when = curl_getdate(v, NULL);
        if (when == -1)
                return -1;
        return when > now ? (double)(when - now) : 0;
}

int resp_parse_mint(const char *body, size_t len, char **ret_token, double *ret_expires_in)
{
        json_t *j = json_loadb(body, len, 0, NULL);
        json_t *tok = json_object_get(j, "token"), *exp = json_object_get(j, "expires_in");
        double secs = json_is_number(exp) ? json_number_value(exp) : -1;
        int r = -EINVAL;

        if (!json_is_string(tok) || json_string_length(tok) == 0 ||
            json_string_length(tok) > RESP_TOKEN_MAX || !(secs > 0 && secs < 1e7))
                goto out;
        /* A token goes into a header: refuse anything that could split it. */
        for (const char *p = json_string_value(tok); *p; p++)
                if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
                        goto out;
        *ret_token = strdup(json_string_value(tok));
        if (!*ret_token) {
                r = -ENOMEM;
                goto out;
        }
        *ret_expires_in = secs;
        r = 0;
out:
        json_decref(j);
        return r;
}

bool resp_parse_counts(const char *body, size_t len, uint32_t events, int64_t *accepted,
                       int64_t *duplicates)
{
        json_int_t acc = -1, dups = 0;
        json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
        bool partial = false;

        if (!j || json_unpack(j, "{s?I s?I}", "accepted", &acc, "duplicates", &dups) < 0) {
                acc = -1;
                dups = 0;
        }
        json_decref(j);
        if (acc < 0)
                acc = -1;
        if (dups < 0)
                dups = 0;
        /* Not acc + dups < events: the two may be up to 2^63 - 1 each. */
        partial = acc >= 0 && acc < (json_int_t)events && dups < (json_int_t)events - acc;
        *accepted = acc;
        *duplicates = dups;
        return partial;
}
