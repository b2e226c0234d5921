/* forward.c - runs HTTP POSTs through one curl multi handle, driven by
 * the libuv loop, and reports each finished exchange to its caller.
 *
 * curl tells us which sockets to watch (socket_cb) and when to wake it
 * (timer_cb); libuv tells curl when they are ready (on_poll, on_timer),
 * and after every curl_multi_socket_action we drain
 * curl_multi_info_read. Nothing here blocks the loop: DNS runs in curl's
 * threaded resolver, I/O is non-blocking. Easy handles are kept for
 * reuse; the multi handle's connection cache gives keep-alive.
 */
#include "forward.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "response.h"

struct fwd_sock {
        uv_poll_t poll;
        curl_socket_t fd;
        struct fwd *fwd;
        struct fwd_sock *next;
};

struct fwd_req {
        struct fwd *fwd;
        struct fwd_req *next;
        CURL *easy;
        struct curl_slist *headers;
        const char *bearer; /* in headers: the credential sent */
        fwd_done_fn cb;
        void *ud;
        size_t resp_len;
        char resp[FWD_RESP_MAX + 1];
        char errbuf[CURL_ERROR_SIZE];
};

static void check_multi_info(struct fwd *f);

static void on_sock_closed(uv_handle_t *h)
{
        free(h->data);
}

static void sock_forget(struct fwd *f, struct fwd_sock *s)
{
        for (struct fwd_sock **p = &f->socks; *p; p = &(*p)->next) {
                if (*p == s) {
                        *p = s->next;
                        break;
                }
        }
        uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
        struct fwd_sock *s = h->data;
        struct fwd *f = s->fwd;
        int flags = 0, running;

        if (status < 0)
                flags = CURL_CSELECT_ERR;
        if (events & UV_READABLE)
                flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
                flags |= CURL_CSELECT_OUT;
        curl_multi_socket_action(f->multi, s->fd, flags, &running);
        check_multi_info(f);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
        struct fwd *f = userp;
        struct fwd_sock *s = socketp;
        int events = 0;

        if (f->closing)
                return 0; /* fwd_close() already closed every poll handle */
        if (action == CURL_POLL_REMOVE) {
                if (s) {
                        uv_poll_stop(&s->poll);
                        curl_multi_assign(f->multi, fd, NULL);
                        sock_forget(f, s);
                }
                return 0;
        }
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -1;
                if (uv_poll_init_socket(f->loop, &s->poll, fd) < 0) {
                        free(s);
                        return -1;
                }
                s->fd = fd;
                s->fwd = f;
                s->poll.data = s;
                s->next = f->socks;
                f->socks = s;
                curl_multi_assign(f->multi, fd, s);
        }
        if (action != CURL_POLL_IN)
                events |= UV_WRITABLE;
        if (action != CURL_POLL_OUT)
                events |= UV_READABLE;
        uv_poll_start(&s->poll, events, on_poll);
        return 0;
}

static void on_timer(uv_timer_t *t)
{
        struct fwd *f = t->data;
        int running;

        if (f->multi)
                curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_multi_info(f);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
        struct fwd *f = userp;

        if (f->closing)
                return 0;
        if (timeout_ms < 0) {
                uv_timer_stop(&f->timer);
                return 0;
        }
        /* Never re-enter curl from its own callback: 0 becomes 1 ms. */
        uv_timer_start(&f->timer, on_timer, timeout_ms ? (uint64_t)timeout_ms : 1, 0);
        return 0;
}

int fwd_init(struct fwd *f, uv_loop_t *loop, const struct cfg *cfg)
{
        memset(f, 0, sizeof(*f));
        f->loop = loop;
        f->cfg = cfg;
        f->stdout_mode = strcmp(cfg->api_url, "stdout") == 0;
        uv_timer_init(loop, &f->timer);
        f->timer.data = f;
        if (f->stdout_mode)
                return 0;
        f->multi = curl_multi_init();
        if (!f->multi)
                return -ENOMEM;
        curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
        curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
        curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->max_in_flight);
        curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_in_flight + 2);
        return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
        struct fwd_req *r = ud;
        size_t n = size * nmemb, room = FWD_RESP_MAX - r->resp_len;

        /* Keep the head of an answer; a huge one is not worth memory. */
        if (n < room)
                room = n;
        memcpy(r->resp + r->resp_len, ptr, room);
        r->resp_len += room;
        return n;
}

static struct fwd_req *req_get(struct fwd *f)
{
        struct fwd_req *r = f->idle;

        if (r) {
                f->idle = r->next;
                if (r->easy)
                        curl_easy_reset(r->easy);
        } else {
                r = calloc(1, sizeof(*r));
                if (!r)
                        return NULL;
                if (!f->stdout_mode) {
                        r->easy = curl_easy_init();
                        if (!r->easy) {
                                free(r);
                                return NULL;
                        }
                }
        }
        r->fwd = f;
        r->next = NULL;
        r->resp_len = 0;
        r->errbuf[0] = '\0';
        return r;
}

static void req_put(struct fwd *f, struct fwd_req *r)
{
        /* Our header list holds the key or token: wiped before freeing. */
        for (struct curl_slist *l = r->headers; l; l = l->next)
                explicit_bzero(l->data, strlen(l->data));
        curl_slist_free_all(r->headers);
        r->headers = NULL;
        r->bearer = NULL;
        if (f->closing) {
                if (r->easy)
                        curl_easy_cleanup(r->easy);
                free(r);
                return;
        }
        r->next = f->idle;
        f->idle = r;
}

static int add_header(struct curl_slist **list, const char *name, const char *value)
{
        char line[1024];
        struct curl_slist *l;
        int n = snprintf(line, sizeof(line), "%s: %s", name, value);

        if (n < 0 || (size_t)n >= sizeof(line))
                return -EINVAL;
        l = curl_slist_append(*list, line);
        explicit_bzero(line, sizeof(line));
        if (!l)
                return -ENOMEM;
        *list = l;
        return 0;
}

/* Authorization: Bearer <key or token>, sized to the credential (session
 * tokens can be long); our copy is wiped once curl has its own, and
 * *ret_sent points at the credential in the list's. */
static int add_bearer(struct curl_slist **list, const char *bearer, const char **ret_sent)
{
        static const char head[] = "Authorization: Bearer ";
        size_t n = sizeof(head) + strlen(bearer);
        struct curl_slist *l;
        char *line = malloc(n);

        if (!line)
                return -ENOMEM;
        memcpy(line, head, sizeof(head) - 1);
        memcpy(line + sizeof(head) - 1, bearer, n - sizeof(head) + 1);
        l = curl_slist_append(*list, line);
        explicit_bzero(line, n);
        free(line);
        if (!l)
                return -ENOMEM;
        *list = l;
        while (l->next)
                l = l->next;
        *ret_sent = l->data + sizeof(head) - 1;
        return 0;
}

static int setup_easy(struct fwd *f, struct fwd_req *r, const struct fwd_post *p)
{
        const struct cfg *c = f->cfg;
        char url[2048];
        CURL *e = r->easy;
        int n, ret;

        n = snprintf(url, sizeof(url), "%s%s", c->api_url, p->path);
        if (n < 0 || (size_t)n >= sizeof(url))
                return -EINVAL;
        if ((ret = add_header(&r->headers, "Content-Type", "application/json")) < 0)
                return ret;
        ret = add_bearer(&r->headers, p->bearer, &r->bearer);
        if (ret < 0)
                return ret;
        if (p->idempotency_key &&
            (ret = add_header(&r->headers, "Idempotency-Key", p->idempotency_key)) < 0)
                return ret;
        if (p->gzip && (ret = add_header(&r->headers, "Content-Encoding", "gzip")) < 0)
                return ret;
        /* No "Expect: 100-continue" round trip for large bodies. */
        if ((ret = add_header(&r->headers, "Expect", "")) < 0)
                return ret;

        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "segopsd/" SEGOPS_VERSION);
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, p->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->body_len);
        /* At least 1 ms: 0 would mean no timeout at all to libcurl. */
        long timeout_ms = c->timeout * 1000 >= 1 ? (long)(c->timeout * 1000) : 1;
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (c->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
        /* No CA store kept across connections: a CA file fixed in place
         * (and a reload) counts from the next connection on. */
        curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
        return 0;
}

/* Dry run: print the body, report success on the next loop turn. */
static int stdout_post(struct fwd *f, struct fwd_req *r, const struct fwd_post *p)
{
        assert(!p->gzip);
        fwrite(p->body, 1, p->body_len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        r->next = f->done_list;
        f->done_list = r;
        uv_timer_start(&f->timer, on_timer, 0, 0);
        return 0;
}

int fwd_start(struct fwd *f, const struct fwd_post *p, fwd_done_fn cb, void *ud)
{
        struct fwd_req *r;
        int ret;

        if (f->closing)
                return -ESHUTDOWN;
        r = req_get(f);
        if (!r)
                return -ENOMEM;
        r->cb = cb;
        r->ud = ud;
        f->in_flight++;
        if (f->stdout_mode)
                return stdout_post(f, r, p);

        ret = setup_easy(f, r, p);
        if (ret < 0)
                goto fail;
        if (curl_multi_add_handle(f->multi, r->easy) != CURLM_OK) {
                ret = -EIO;
                goto fail;
        }
        r->next = f->active;
        f->active = r;
        return 0;
fail:
        f->in_flight--;
        req_put(f, r);
        return ret;
}

static bool is_tls_error(CURLcode c)
{
        switch (c) {
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_USE_SSL_FAILED:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED: return true;
        default: return false;
        }
}

static void unlink_active(struct fwd *f, struct fwd_req *r)
{
        for (struct fwd_req **p = &f->active; *p; p = &(*p)->next) {
                if (*p == r) {
                        *p = r->next;
                        return;
                }
        }
}

/* Seconds the last response's Retry-After asks for (RFC 9110 10.2.3:
 * delay-seconds or an HTTP date), or -1 when it has none or one that is
 * neither. CURLINFO_RETRY_AFTER cannot be used: it says 0 both for
 * "Retry-After: 0" and for no header at all, and 0 means resend now. */
static double retry_after_of(CURL *easy)
{
        struct curl_header *h;

        if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
                return -1;
        return resp_retry_after(h->value, time(NULL));
}

static void finish(struct fwd *f, struct fwd_req *r, CURLcode code)
{
        struct fwd_result res = { .retry_after = -1 };

        res.curl_code = (int)code;
        if (r->easy) {
                curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
                if (res.status > 0)
                        res.retry_after = retry_after_of(r->easy);
        } else {
                res.status = code == CURLE_OK ? 200 : 0;
        }
        if (code != CURLE_OK) {
                res.status = 0;
                res.aborted = f->closing;
                res.tls_error = is_tls_error(code);
                res.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
        }
        r->resp[r->resp_len] = '\0';
        res.body = r->resp;
        res.body_len = r->resp_len;
        res.bearer = r->bearer;
        f->in_flight--;
        /* res points into r: r goes back only after the callback. */
        r->cb(r->ud, &res);
        req_put(f, r);
}

static void check_multi_info(struct fwd *f)
{
        CURLMsg *msg;
        int pending;

        while (f->done_list) {
                struct fwd_req *r = f->done_list;
                f->done_list = r->next;
                finish(f, r, CURLE_OK);
        }
        if (!f->multi)
                return;
        while ((msg = curl_multi_info_read(f->multi, &pending))) {
                struct fwd_req *r = NULL;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                CURL *easy = msg->easy_handle;
                CURLcode code = msg->data.result;
                curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
                curl_multi_remove_handle(f->multi, easy);
                unlink_active(f, r);
                finish(f, r, code);
        }
}

void fwd_close(struct fwd *f)
{
        f->closing = true;
        while (f->done_list) {
                struct fwd_req *r = f->done_list;
                f->done_list = r->next;
                finish(f, r, CURLE_ABORTED_BY_CALLBACK);
        }
        while (f->active) {
                struct fwd_req *r = f->active;
                f->active = r->next;
                curl_multi_remove_handle(f->multi, r->easy);
                finish(f, r, CURLE_ABORTED_BY_CALLBACK);
        }
        while (f->idle) {
                struct fwd_req *r = f->idle;
                f->idle = r->next;
                if (r->easy)
                        curl_easy_cleanup(r->easy);
                free(r);
        }
        while (f->socks) {
                struct fwd_sock *s = f->socks;
                f->socks = s->next;
                uv_poll_stop(&s->poll);
                uv_close((uv_handle_t *)&s->poll, on_sock_closed);
        }
        if (f->multi) {
                curl_multi_cleanup(f->multi);
                f->multi = NULL;
        }
        uv_close((uv_handle_t *)&f->timer, NULL);
}

unsigned fwd_in_flight(const struct fwd *f)
{
        return f->in_flight;
}

bool fwd_dry_run(const struct fwd *f)
{
        return f->stdout_mode;
}
