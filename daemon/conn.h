/* conn.h - the control (stream) socket and its connections. */
#ifndef SEGOPSD_CONN_H
#define SEGOPSD_CONN_H

#include <stdbool.h>

struct daemon;

/* Bind (or adopt) the control socket and start accepting. 0 or -errno,
 * with the reason logged. */
int conn_server_open(struct daemon *d);

/* Stop accepting; read what each client already sent, then close every
 * connection (one waiting for a flush is read after its answer). */
void conn_server_close(struct daemon *d);

/* A connection waits for a flush's answer: the lines its client sent
 * after the flush are read only then, so a stop is not done before. */
bool conn_server_flushing(const struct daemon *d);

/* The end of a stop: close whatever connections are left, replies
 * unwritten or not. Returns how many there were. */
unsigned conn_server_abort(struct daemon *d);

/* The control socket was passed by systemd (socket activation), not
 * bound here. */
bool conn_server_adopted(const struct daemon *d);

#endif
