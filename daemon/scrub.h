/* scrub.h - keeps the API key and session tokens out of text that came
 * from the upstream (an error body, curl's message) before it reaches a
 * log line or stats.
 *
 * An upstream, or whatever answers in its place, may echo the request's
 * Authorization header into an error body, and segopsd logs the head of
 * a rejected batch's body. scrub_text() replaces, with SCRUB_MARK:
 *   - each secret it is given (the key, the token a request carried, the
 *     current token), wherever it appears, even inside a longer word;
 *   - the head of one (at least SCRUB_TAIL_MIN characters) that the
 *     input ends in: a body cut at FWD_RESP_MAX;
 *   - anything shaped like a key: "sk_" or "pk_" at the start of a word
 *     and at least SCRUB_SHAPE_MIN characters in all (SPEC 6's shortest
 *     key), or fewer when the input ends in it;
 *   - the credential after "Bearer " (any case), whatever it is.
 * Matching also looks through up to SCRUB_UNESCAPE levels of escapes,
 * so a secret written with JSON (\u005f, \/), C/Python (\x5f) or URL
 * (%5F) escapes is found too, and so is one escaped twice (\\u005f: JSON
 * quoted inside JSON). Deeper escaping is not undone. Runs of a shape or
 * a credential end at white space, a quote, a backslash, or one of
 * ,;<>()[]{}`; a secret given is found whatever characters it holds.
 *
 * Time and memory are linear in the input and the secrets (a KMP search
 * per secret), so a hostile upstream cannot make scrubbing expensive.
 * The output is cut, when it must be, after the scrubbing: a cut never
 * leaves part of a secret behind.
 */
#ifndef SEGOPSD_SCRUB_H
#define SEGOPSD_SCRUB_H

#include <stddef.h>

#define SCRUB_MARK "[redacted]"
#define SCRUB_TAIL_MIN 4  /* a cut secret's head shorter than this stays */
#define SCRUB_SHAPE_MIN 8 /* sk_/pk_ and five more: SPEC 6's shortest key */
#define SCRUB_UNESCAPE 2  /* levels of escapes looked through */

/* Copy the n bytes at s into out (room for outsz bytes) with what is
 * listed above replaced by SCRUB_MARK (one mark for adjacent matches).
 * secrets: nsecrets strings, each may be NULL or "" (ignored). The copy
 * stops where the next byte, or the next whole mark, no longer fits
 * with the NUL; out is NUL-terminated whenever outsz > 0. When memory
 * for the work cannot be had, out holds only as much of SCRUB_MARK as
 * fits (nothing of s). Returns the length written. Bytes are copied as
 * they are: compose with proto_printable() before
 * they go into a log line (log_excerpt). */
size_t scrub_text(char *out, size_t outsz, const char *s, size_t n, const char *const *secrets,
                  size_t nsecrets);

#endif
