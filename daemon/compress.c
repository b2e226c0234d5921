/* compress.c - one-shot gzip of a buffer with zlib's deflate. Level 1:
 * event JSON compresses well even at the fastest level, and the CPU
 * budget per event is small. */
#include "compress.h"

#include <errno.h>
#include <zlib.h>

int gz_compress(const char *in, size_t len, struct proto_buf *out)
{
        z_stream z = { 0 };
        int ret;

        /* 15 + 16: a gzip wrapper, not zlib's. */
        if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return -ENOMEM;
        proto_buf_reset(out);
        ret = proto_buf_reserve(out, deflateBound(&z, (uLong)len));
        if (ret < 0)
                goto out;
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)len;
        z.next_out = (Bytef *)out->data;
        z.avail_out = (uInt)(out->cap);
        ret = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : -EIO;
        out->len = z.total_out;
out:
        deflateEnd(&z);
        return ret;
}
