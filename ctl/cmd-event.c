/* cmd-event.c - segopsctl send and identify: events into segopsd.
 *
 * Events go over the control (stream) socket followed by {"op":"ping"},
 * so the exit status can say whether segopsd accepted every line: the
 * daemon answers only rejected lines (with their line number) and the
 * ping only after every earlier line was handled. The JSON we build
 * escapes user ids and types with proto's escaper; --payload/--traits
 * are passed through as written, so that the daemon's validation — the
 * one that counts — speaks about them, once we checked that they are
 * JSON at all: a syntax error is shown under what the user typed, with
 * a caret. --datagram sends on the events socket instead:
 * fire-and-forget, like libshim, so the event is first validated here
 * with the daemon's own parser (proto_parse), as there is no answer to
 * tell of a rejection. track is send under the SDK's name.
 */
#include "clock.h"
#include "ctl.h"
#include "proto.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHOW_WIDTH 72 /* the part of a long --payload shown around an error */

/* The command line of send and identify. */
enum { OPT_USER = 1, OPT_TYPE, OPT_OBJECT, OPT_AT, OPT_ID, OPT_DGRAM };

struct event_args {
        bool identify;
        bool datagram; /* --datagram */
        const char *user;
        const char *type;   /* NULL for identify */
        const char *object; /* payload or traits JSON text */
        const char *at;
        const char *event_id;
};

/* Append raw JSON text given on the command line. A line break would
 * end the message early; outside strings it is mere whitespace, inside
 * one it is invalid JSON anyway, which we say here since the daemon
 * would only ever see half a line. */
static int append_raw_json(struct proto_buf *b, const char *opt, const char *s)
{
        bool in_string = false, escaped = false;
        size_t start = b->len;
        int r;

        r = proto_buf_append_str(b, s);
        if (r < 0)
                return r;
        for (size_t i = start; i < b->len; i++) {
                char ch = b->data[i];

                if (in_string) {
                        if (escaped)
                                escaped = false;
                        else if (ch == '\\')
                                escaped = true;
                        else if (ch == '"')
                                in_string = false;
                        else if (ch == '\n' || ch == '\r')
                                goto bad;
                } else if (ch == '"') {
                        in_string = true;
                } else if (ch == '\n' || ch == '\r') {
                        b->data[i] = ' ';
                }
        }
        return 0;
bad:
        fprintf(stderr,
                "segopsctl: %s: a line break inside a JSON string is not valid JSON "
                "(write \\n)\n",
                opt);
        return -EINVAL;
}

/* Show text with a caret under byte offset off: the whole text when it
 * is short, else SHOW_WIDTH bytes around off. Control characters show as
 * spaces; the caret counts characters, not bytes (UTF-8). */
static void show_caret(const char *text, size_t off)
{
        size_t len = strlen(text), from = 0, to = len, col = 0;

        if (off > len)
                off = len;
        if (len > SHOW_WIDTH) {
                from = off > SHOW_WIDTH / 2 ? off - SHOW_WIDTH / 2 : 0;
                to = from + SHOW_WIDTH < len ? from + SHOW_WIDTH : len;
                while (from > 0 && ((unsigned char)text[from] & 0xC0) == 0x80)
                        from--; /* not in the middle of a character */
                while (to < len && ((unsigned char)text[to] & 0xC0) == 0x80)
                        to++;
        }
        fprintf(stderr, "  %s", from > 0 ? "..." : "");
        for (size_t i = from; i < to; i++)
                fputc((unsigned char)text[i] < 0x20 ? ' ' : text[i], stderr);
        fprintf(stderr, "%s\n  %s", to < len ? "..." : "", from > 0 ? "   " : "");
        for (size_t i = from; i < off; i++)
                if (((unsigned char)text[i] & 0xC0) != 0x80)
                        col++;
        fprintf(stderr, "%*s^\n", (int)col, "");
}

/* --payload/--traits must be JSON: say where it is not, before the
 * daemon sees half a message. 0 or -EINVAL after the message. */
static int check_json_text(const char *opt, const char *text)
{
        json_error_t jerr;
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        size_t off;

        if (j) {
                json_decref(j);
                return 0;
        }
        /* jansson's position is the bytes read when it gave up: the
         * offending character is the last of them. */
        off = jerr.position > 0 ? (size_t)jerr.position - 1 : 0;
        fprintf(stderr, "segopsctl: %s is not valid JSON: %s (at byte %zu)\n", opt, jerr.text, off);
        show_caret(text, off);
        return -EINVAL;
}

/* Epoch seconds ("1700000000", "-1.5") go as a JSON number, anything
 * else as a string for the daemon to judge as RFC 3339. Numbers must be
 * JSON's own (RFC 8259 section 6, without exponent): "1700000000.",
 * ".5" or "007" would make the whole line invalid JSON, so they go as
 * strings and get the daemon's clear answer about occurred_at. */
static bool looks_numeric(const char *s)
{
        size_t i = 0;

        if (s[i] == '-')
                i++;
        if (s[i] == '0')
                i++;
        else if (s[i] >= '1' && s[i] <= '9')
                while (s[i] >= '0' && s[i] <= '9')
                        i++;
        else
                return false;
        if (s[i] == '.') {
                if (s[++i] < '0' || s[i] > '9')
                        return false;
                while (s[i] >= '0' && s[i] <= '9')
                        i++;
        }
        return s[i] == '\0';
}

static int append_field(struct proto_buf *b, const char *key, const char *value)
{
        int r = proto_buf_append_str(b, key);

        return r < 0 ? r : proto_json_escape(b, value, strlen(value));
}

static int build_event(struct proto_buf *b, const struct event_args *a)
{
        int r;

        if (a->type) {
                r = append_field(b, "{\"user_id\":", a->user);
                if (r == 0)
                        r = append_field(b, ",\"event_type\":", a->type);
        } else {
                r = append_field(b, "{\"type\":\"identify\",\"user_id\":", a->user);
        }
        if (r == 0 && a->event_id)
                r = append_field(b, ",\"event_id\":", a->event_id);
        if (r == 0 && a->at) {
                if (looks_numeric(a->at)) {
                        r = proto_buf_append_str(b, ",\"occurred_at\":");
                        if (r == 0)
                                r = proto_buf_append_str(b, a->at);
                } else {
                        r = append_field(b, ",\"occurred_at\":", a->at);
                }
        }
        if (r == 0 && a->object) {
                r = check_json_text(a->type ? "--payload" : "--traits", a->object);
                if (r == 0)
                        r = proto_buf_append_str(b, a->type ? ",\"payload\":" : ",\"traits\":");
                if (r == 0)
                        r = append_raw_json(b, a->type ? "--payload" : "--traits", a->object);
        }
        if (r == 0)
                r = proto_buf_append_str(b, "}\n");
        return r;
}

struct send_ctx {
        unsigned rejected;
        unsigned failed; /* ok:false replies without a line number */
        bool confirmed;  /* our ping's answer was the last reply */
        json_t *report;  /* --json: {"rejected":[...],"replies":[...]}, else NULL */
};

/* --json: keep a reply for the report instead of printing it. */
static void report_add(struct send_ctx *s, const char *key, json_t *reply)
{
        json_t *a = json_object_get(s->report, key);

        if (!a) {
                a = json_array();
                json_object_set_new(s->report, key, a);
        }
        json_array_append(a, reply);
}

static int on_send_reply(json_t *reply, const char *raw, size_t rawlen, void *ctx)
{
        struct send_ctx *s = ctx;
        json_t *ok = json_object_get(reply, "ok");
        json_t *line = json_object_get(reply, "line");

        s->confirmed = false;
        if (json_is_false(ok) && json_is_integer(line)) {
                char prefix[48];

                snprintf(prefix, sizeof(prefix),
                         "line %lld: ", (long long)json_integer_value(line));
                ctl_print_reply_error(prefix, reply);
                s->rejected++;
                if (s->report)
                        report_add(s, "rejected", reply);
        } else if (json_is_true(ok) && json_object_get(reply, "version") &&
                   json_object_size(reply) == 2) {
                /* Exactly {"ok":true,"version":...}: stats has more keys. */
                /* A ping's answer; a later reply means it was one the
                 * input itself carried, not ours. */
                s->confirmed = true;
        } else if (json_is_true(ok) && s->report) {
                report_add(s, "replies", reply);
        } else if (json_is_true(ok)) {
                /* The answer to an op the input carried: show it. */
                fwrite(raw, 1, rawlen, stdout);
                fputc('\n', stdout);
        } else {
                ctl_print_reply_error("segopsctl: segopsd: ", reply);
                s->failed++;
                if (s->report)
                        report_add(s, "replies", reply);
        }
        return 0;
}

static int send_stream(const struct ctl_opts *o, const char *data, size_t len, int in_fd)
{
        struct ctl_request req = {
                .data = data,
                .len = len,
                .in_fd = in_fd,
                .add_ping = true,
                .timeout_ms = o->timeout_ms,
        };
        struct send_ctx s = { .report = o->json ? json_object() : NULL };
        int r;

        r = ctl_exchange(o->control_path, &req, on_send_reply, &s, NULL);
        if (r < 0) {
                r = ctl_json_error(o, ctl_exchange_error(o->control_path, r));
                goto out;
        }
        if (s.failed) {
                r = CTL_EXIT_FAIL;
        } else if (!s.confirmed) {
                fprintf(stderr,
                        "segopsctl: %s: segopsd closed the connection before "
                        "confirming the events%s\n",
                        o->control_path, s.rejected ? "" : "; some may not have been received");
                r = CTL_EXIT_PROTO;
        } else {
                r = s.rejected ? CTL_EXIT_FAIL : CTL_EXIT_OK;
        }
        if (s.report) {
                json_object_set_new(s.report, "ok", json_boolean(r == CTL_EXIT_OK));
                json_object_set_new(s.report, "confirmed", json_boolean(s.confirmed));
                if (r != CTL_EXIT_OK)
                        json_object_set_new(s.report, "exit", json_integer(r));
                if (ctl_print_json(s.report) != CTL_EXIT_OK && r == CTL_EXIT_OK)
                        r = CTL_EXIT_FAIL;
        }
out:
        json_decref(s.report);
        return r;
}

/* --datagram has no answer: judge the event as segopsd will, before it
 * goes. The largest max_message_bytes a daemon may have is the bound
 * here (the daemon's own may be smaller; then it counts the rejection).
 * 0, or -EINVAL after saying why. */
static int check_datagram(const char *cmd, const char *data, size_t len)
{
        static const uint8_t rnd[16] = { 0 };
        struct proto_buf out = { 0 };
        struct proto_msg msg;
        struct proto_error err;
        int r;

        r = proto_parse(data, len > 0 && data[len - 1] == '\n' ? len - 1 : len, 1u << 20,
                        clock_wall_ms(), rnd, &out, &msg, &err);
        proto_buf_free(&out);
        if (r == -EINVAL) {
                fprintf(stderr,
                        "segopsctl %s: segopsd would reject this event: %s: %s; nothing "
                        "was sent\n",
                        cmd, proto_reason_name(err.reason), err.detail);
                return -EINVAL;
        }
        return r;
}

static int send_datagram(const struct ctl_opts *o, const char *cmd, const char *data, size_t len)
{
        json_t *j;
        int r;

        r = check_datagram(cmd, data, len);
        if (r < 0) {
                if (r != -EINVAL)
                        fprintf(stderr, "segopsctl: %s\n", strerror(-r));
                return ctl_json_error(o, CTL_EXIT_FAIL);
        }
        r = ctl_send_datagram(o, data, len);
        if (r != CTL_EXIT_OK || !o->json)
                return ctl_json_error(o, r);
        j = json_pack("{s:b s:s}", "ok", 1, "sent", "datagram");
        r = ctl_print_json(j);
        json_decref(j);
        return r;
}

static void event_usage(FILE *f, bool identify)
{
        if (identify)
                fprintf(f, "Usage: segopsctl identify --user USER [--traits JSON] [--at TIME]\n"
                           "                          [--event-id ID] [--datagram]\n"
                           "\n"
                           "Send an identify event: the user's traits (a JSON object).\n");
        else
                fprintf(f,
                        "Usage: segopsctl send --user USER --type TYPE [--payload JSON] [--at "
                        "TIME]\n"
                        "                      [--event-id ID] [--datagram]\n"
                        "       segopsctl send < events.ndjson\n"
                        "\n"
                        "Send one event, or (without --user/--type) every NDJSON line of stdin.\n"
                        "Exits 0 only when segopsd accepted every line; each rejected line is\n"
                        "reported as \"line N: <error>: <detail>\" on stderr and the exit status "
                        "is 1.\n"
                        "segopsctl track is the same command (the SDK's name for it).\n"
                        "With --datagram the event is validated here first: one segopsd would\n"
                        "reject is not sent (exit 1). --json prints {\"ok\":BOOL,\"rejected\":"
                        "[...]}.\n");
        fprintf(f,
                "\n"
                "Options:\n"
                "      --user USER      user_id\n"
                "%s"
                "      --%s JSON   a JSON object, passed to segopsd as written\n"
                "      --at TIME        occurred_at: RFC 3339 or Unix epoch seconds\n"
                "      --event-id ID    event_id (1-64 of A-Za-z0-9._:-), default: assigned\n"
                "      --datagram       send on the events socket: no confirmation\n"
                "      --control PATH, --socket PATH, --timeout SECS: see segopsctl --help\n"
                "  -h, --help           show this help\n",
                identify ? "" : "      --type TYPE      event_type\n",
                identify ? "traits " : "payload");
}

static void send_usage(FILE *f)
{
        event_usage(f, false);
}

static void identify_usage(FILE *f)
{
        event_usage(f, true);
}

static int event_option(int c, const char *arg, void *state)
{
        struct event_args *a = state;

        switch (c) {
        case OPT_USER: a->user = arg; break;
        case OPT_TYPE:
                if (a->identify)
                        return ctl_usage_error("identify", "identify has no --type (its "
                                                           "event_type is context_identified)");
                a->type = arg;
                break;
        case OPT_OBJECT: a->object = arg; break;
        case OPT_AT: a->at = arg; break;
        case OPT_ID: a->event_id = arg; break;
        case OPT_DGRAM: a->datagram = true; break;
        default: return CTL_EXIT_USAGE;
        }
        return 0;
}

/* One event made of the command line's fields. */
static int send_one(const struct ctl_opts *o, const char *cmd, const struct event_args *a)
{
        struct proto_buf b = { 0 };
        int r;

        if (!a->user)
                return ctl_usage_error(cmd, "--user is required");
        if (!a->identify && !a->type)
                return ctl_usage_error(cmd, "--type is required with --user");
        r = build_event(&b, a);
        if (r == -EINVAL) {
                r = ctl_json_error(o, CTL_EXIT_FAIL);
                goto out;
        }
        if (r < 0) {
                fprintf(stderr, "segopsctl: %s\n", strerror(-r));
                r = CTL_EXIT_FAIL;
                goto out;
        }
        r = a->datagram ? send_datagram(o, cmd, b.data, b.len) : send_stream(o, b.data, b.len, -1);
out:
        proto_buf_free(&b);
        return r;
}

static int run_event(struct ctl_opts *o, int argc, char **argv, bool identify)
{
        const struct option opts[] = {
                CTL_GLOBAL_LONGOPTS,
                { "user", required_argument, NULL, OPT_USER },
                { "type", required_argument, NULL, OPT_TYPE },
                { identify ? "traits" : "payload", required_argument, NULL, OPT_OBJECT },
                { "at", required_argument, NULL, OPT_AT },
                { "event-id", required_argument, NULL, OPT_ID },
                { "datagram", no_argument, NULL, OPT_DGRAM },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        const struct ctl_cmdline cl = {
                .name = identify ? "identify" : "send",
                .usage = identify ? identify_usage : send_usage,
                .opts = opts,
                .option = event_option,
        };
        struct event_args a = { .identify = identify };
        int r;

        r = ctl_parse_args(o, argc, argv, &cl, &a, NULL);
        if (r >= 0)
                return r;
        if (!identify && !(a.user || a.type || a.object || a.at || a.event_id)) {
                /* Bulk: stdin as it is, line numbers = stdin lines. */
                if (a.datagram)
                        return ctl_usage_error(cl.name, "--datagram sends one event; "
                                                        "use socat for NDJSON datagrams");
                return send_stream(o, NULL, 0, STDIN_FILENO);
        }
        return send_one(o, cl.name, &a);
}

int cmd_send(struct ctl_opts *o, int argc, char **argv)
{
        return run_event(o, argc, argv, false);
}

int cmd_identify(struct ctl_opts *o, int argc, char **argv)
{
        return run_event(o, argc, argv, true);
}
