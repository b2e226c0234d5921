/* crc32c.c - CRC-32C, reflected polynomial 0x82F63B78, initial and final
 * value ~0 (iSCSI, ext4, Btrfs): crc32c(0, "123456789", 9) = 0xE3069283.
 * The hardware path runs on x86-64 CPUs with SSE4.2 (every x86-64 CPU
 * made since 2008); anything else uses a byte table. */
#include "crc32c.h"

#include <string.h>

#define POLY 0x82f63b78u

static uint32_t table[256];

static void make_table(void)
{
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;

                for (int k = 0; k < 8; k++)
                        c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
                table[i] = c;
        }
}

uint32_t crc32c_portable(uint32_t crc, const void *p, size_t n)
{
        const unsigned char *b = p;

        if (!table[1])
                make_table();
        crc = ~crc;
        while (n--)
                crc = table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
        return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *p,
                                                               size_t n)
{
        const unsigned char *b = p;
        uint64_t c = ~crc;

        for (; n >= 8; n -= 8, b += 8) {
                uint64_t v;

                memcpy(&v, b, 8);
                c = _mm_crc32_u64(c, v);
        }
        for (; n; n--)
                c = _mm_crc32_u8((uint32_t)c, *b++);
        return ~(uint32_t)c;
}

uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
        static int hw = -1; /* loop thread and tests only */

        if (hw < 0)
                hw = __builtin_cpu_supports("sse4.2");
        return hw ? crc32c_sse42(crc, p, n) : crc32c_portable(crc, p, n);
}
#else
uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
        return crc32c_portable(crc, p, n);
}
#endif
