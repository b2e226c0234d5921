/* crc32c.h - CRC-32C (Castagnoli), the checksum of the spool's records:
 * with SSE4.2's crc32 instruction where the CPU has it (about 20 times
 * zlib's table-driven CRC-32 on a 200-byte event), a table otherwise.
 * Pure; the choice is made once, at the first call. */
#ifndef SEGOPSD_CRC32C_H
#define SEGOPSD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue crc (0 to start) over p[0..n). */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* The table version, whatever the CPU (for tests). */
uint32_t crc32c_portable(uint32_t crc, const void *p, size_t n);

#endif
