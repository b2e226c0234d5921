/* response.c - the rows of SPEC section 4's table, in the order a reader
 * checks them. Codes the table does not name (1xx as a final answer,
 * 600 and up) are taken as transient: an upstream that answers
 * nonsense is retried, never trusted to have refused the events. */
#include "response.h"

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
