/* compress.h - gzip a request body (zlib). Pure and thread-safe: the
 * batcher runs it on libuv's thread pool so the loop keeps reading. */
#ifndef SEGOPSD_COMPRESS_H
#define SEGOPSD_COMPRESS_H

#include <stddef.h>

#include "proto.h"

/* Replace out's content with the gzip of in[0..len). 0, -ENOMEM or -EIO. */
int gz_compress(const char *in, size_t len, struct proto_buf *out);

#endif
