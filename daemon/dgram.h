/* dgram.h - the fire-and-forget datagram socket (SPEC section 2). */
#ifndef SEGOPSD_DGRAM_H
#define SEGOPSD_DGRAM_H

struct daemon;

/* Bind (or adopt) the events socket and start reading. 0 or -errno,
 * with the reason logged. */
int dgram_open(struct daemon *d);
/* Read everything already queued in the socket (flush, stop). */
void dgram_drain(struct daemon *d);
/* Drain, then close. */
void dgram_close(struct daemon *d);

#endif
