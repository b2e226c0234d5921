/* sink-http.h - the sink's HTTP/1.1 server (sink-http.c): connections,
 * requests and responses; what a request means is the caller's handler.
 */
#ifndef SEGOPS_BENCH_SINK_HTTP_H
#define SEGOPS_BENCH_SINK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_CONNS 256
#define HTTP_REPLY_BODY 512 /* the longest response body, NUL included */

struct http_request {
        char method[8];
        char path[64];
        size_t header_len; /* through the blank line */
        size_t content_length;
        bool has_length; /* a Content-Length header came */
        bool gzip;       /* Content-Encoding: gzip */
        bool expect_continue;
        bool close;
};

struct http_reply {
        int status;
        const char *reason;
        char body[HTTP_REPLY_BODY]; /* sent as application/json */
};

/* Answer one complete request: body is its content_length bytes as
 * received. Fill reply and return 0, or return a negative errno to close
 * the connection without an answer. */
typedef int (*http_handler_fn)(void *ctx, const struct http_request *rq, const char *body,
                               struct http_reply *reply);

struct http_conn;

struct http_server {
        int epfd; /* the caller's epoll set, or -1 */
        int lfd;  /* listening socket, or -1 */
        struct http_conn *conns[HTTP_MAX_CONNS];
        unsigned nconns;
        uint64_t refused; /* connections closed at the cap */
        http_handler_fn handler;
        void *ctx;
};

/* Set srv up to answer through handler; nothing is opened yet, and
 * http_close() may follow at once. */
void http_init(struct http_server *srv, http_handler_fn handler, void *ctx);

/* Listen on 127.0.0.1:port (0: a free port, *ret_port says which) and
 * watch it, and then every connection, in the caller's epoll set epfd.
 * Those events carry pointers of the server's own: the caller hands every
 * event that is not its own to http_on_event(). Returns 0 or a negative
 * errno. */
int http_listen(struct http_server *srv, int epfd, unsigned port, unsigned *ret_port);

/* Serve one epoll event whose data.ptr is ptr: new connections, or
 * reading, answering and writing on one. */
void http_on_event(struct http_server *srv, void *ptr, uint32_t events);

/* Close every connection and the listening socket. */
void http_close(struct http_server *srv);

#endif
