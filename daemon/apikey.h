/* apikey.h - the API key segopsd holds for the upstream: never logged,
 * never in stats, argv or errors (only its redacted form). */
#ifndef SEGOPSD_APIKEY_H
#define SEGOPSD_APIKEY_H

#include <stdint.h>

struct apikey {
        char *secret;      /* sk_... or pk_...; NULL in dry-run mode */
        char redacted[32]; /* "sk_…abcd", for logs */
        uint64_t gen;      /* bumped when a reload replaces the key */
};

#endif
