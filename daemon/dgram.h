/* dgram.h - the fire-and-forget datagram socket (SPEC section 2). */
#ifndef SEGOPSD_DGRAM_H
#define SEGOPSD_DGRAM_H

#include <stdbool.h>

struct daemon;

/* Bind (or adopt) the events socket and start reading. 0 or -errno,
 * with the reason logged. */
int dgram_open(struct daemon *d);
/* A flush begins: read what the socket holds now, in bounded slices
 * over the next turns of the loop. Flushes started before the drain is
 * done cover what it reads (batcher_drain_goal). */
void dgram_drain(struct daemon *d);
/* The stop: refuse new datagrams, read what is queued (in slices), then
 * close. */
void dgram_close(struct daemon *d);
/* dgram_close() has not finished reading yet. */
bool dgram_closing(const struct daemon *d);
/* The events socket was passed by systemd (socket activation), not
 * bound here. */
bool dgram_adopted(const struct daemon *d);
/* End the stop's reading now (stop_timeout): what is left unread is
 * counted (ingest.unread_at_stop), logged and, unless systemd keeps the
 * socket, discarded. */
void dgram_close_now(struct daemon *d);

#endif
