/* standalone.c - runs a libFuzzer target without libFuzzer, for CI and
 * compilers without it:
 *
 *   fuzz-NAME [-dict=FILE] [FILE | DIRECTORY]...
 *
 * First every file named, and every file in every directory named (a
 * corpus, crashes found before), once each; then N deterministic
 * mutations (SEGOPS_FUZZ_ITERATIONS, default 20000) of the seeds: the
 * target's built-in ones (fuzz_seed, when it has any) and the corpus
 * files. A mutation may insert or overwrite with a token of the
 * libFuzzer-format dictionary. A crash or a failed assertion fails the
 * test; scripts/fuzz.sh runs the real fuzzer for as long as you like.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_MAX_INPUT (1 << 16) /* bytes of a seed or a mutation */
#define MAX_SEEDS 512
#define MAX_TOKENS 512
#define MAX_TOKEN 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* The target's seeds: valid inputs to mutate (optional). */
size_t fuzz_seed(unsigned i, uint8_t *buf, size_t cap) __attribute__((weak));

struct bytes {
        uint8_t *p;
        size_t n;
};

static struct bytes seeds[MAX_SEEDS], tokens[MAX_TOKENS];
static unsigned nseeds, ntokens;

/* The input being run, saved on SIGABRT (a failed assertion; a
 * sanitizer's report with abort_on_error=1) as ./crash-standalone: run
 * it again with the harness, or keep it in the corpus as a regression
 * test. */
static const uint8_t *current;
static size_t current_len;

static void on_fatal(int sig)
{
        static const char msg[] = "standalone: the failing input is ./crash-standalone\n";
        int fd = open("crash-standalone", O_WRONLY | O_CREAT | O_TRUNC, 0644);

        if (fd >= 0) {
                ssize_t w = write(fd, current, current_len);

                close(fd);
                if (w == (ssize_t)current_len)
                        (void)!write(2, msg, sizeof(msg) - 1);
        }
        signal(sig, SIG_DFL);
        raise(sig);
}

static void run(const uint8_t *p, size_t n)
{
        current = p;
        current_len = n;
        LLVMFuzzerTestOneInput(p, n);
}

static void add(struct bytes *set, unsigned *n, unsigned max, const uint8_t *p, size_t len)
{
        uint8_t *copy;

        if (*n >= max || !(copy = malloc(len ? len : 1)))
                return;
        memcpy(copy, p, len);
        set[*n].p = copy;
        set[*n].n = len;
        (*n)++;
}

/* Run one file and keep it as a seed. */
static int run_file(const char *path)
{
        static uint8_t buf[FUZZ_MAX_INPUT];
        FILE *f = fopen(path, "rb");
        size_t n;

        if (!f) {
                perror(path);
                return 1;
        }
        n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        run(buf, n);
        add(seeds, &nseeds, MAX_SEEDS, buf, n);
        return 0;
}

static int by_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file of dir, in name order (the same run every time). */
static int run_dir(const char *dir, unsigned *nfiles)
{
        char *names[MAX_SEEDS], path[4096];
        struct dirent *e;
        unsigned n = 0;
        struct stat sb;
        int bad = 0;
        DIR *d = opendir(dir);

        if (!d) {
                perror(dir);
                return 1;
        }
        while (n < MAX_SEEDS && (e = readdir(d)))
                if (e->d_name[0] != '.' && (names[n] = strdup(e->d_name)))
                        n++;
        closedir(d);
        qsort(names, n, sizeof(names[0]), by_name);
        for (unsigned i = 0; i < n; i++) {
                snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
                if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                        bad |= run_file(path);
                        (*nfiles)++;
                }
                free(names[i]);
        }
        return bad;
}

/* A libFuzzer dictionary: lines of [name=]"value", with \\, \" and \xHH. */
static int load_dict(const char *path)
{
        char line[1024];
        FILE *f = fopen(path, "r");

        if (!f) {
                perror(path);
                return 1;
        }
        while (fgets(line, sizeof(line), f)) {
                uint8_t tok[MAX_TOKEN];
                char *q = strchr(line, '"');
                size_t n = 0;

                if (line[0] == '#' || !q)
                        continue;
                for (q++; *q && *q != '"' && n < sizeof(tok); q++) {
                        unsigned v;

                        if (*q == '\\' && q[1] == 'x' && sscanf(q + 2, "%2x", &v) == 1) {
                                tok[n++] = (uint8_t)v;
                                q += 3;
                        } else if (*q == '\\' && q[1]) {
                                tok[n++] = (uint8_t) * ++q;
                        } else {
                                tok[n++] = (uint8_t)*q;
                        }
                }
                if (n > 0)
                        add(tokens, &ntokens, MAX_TOKENS, tok, n);
        }
        fclose(f);
        return 0;
}

static uint64_t next(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/* Flip, overwrite, cut, insert, duplicate: what damage does; and
 * dictionary tokens inserted or written over, what a grammar needs. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap, uint64_t *rng)
{
        unsigned n = 1 + (unsigned)(next(rng) % 4);

        for (unsigned k = 0; k < n; k++) {
                size_t at = len ? (size_t)(next(rng) % (len + 1)) : 0,
                       span = 1 + (size_t)(next(rng) % 32);
                const struct bytes *t = ntokens ? &tokens[next(rng) % ntokens] : NULL;

                switch (next(rng) % 7) {
                case 0:
                        if (at < len)
                                buf[at] ^= (uint8_t)(1u << (next(rng) % 8));
                        break;
                case 1:
                        for (size_t i = at; i < len && i < at + span; i++)
                                buf[i] = (uint8_t)next(rng);
                        break;
                case 2: len = at; break;
                case 3:
                        if (len + span <= cap) {
                                memmove(buf + at + span, buf + at, len - at);
                                for (size_t i = at; i < at + span; i++)
                                        buf[i] = (uint8_t)next(rng);
                                len += span;
                        }
                        break;
                case 4:
                        if (len + span <= cap && at + span <= len) {
                                memmove(buf + at + span, buf + at, len - at);
                                len += span;
                        }
                        break;
                case 5:
                        if (t && len + t->n <= cap) {
                                memmove(buf + at + t->n, buf + at, len - at);
                                memcpy(buf + at, t->p, t->n);
                                len += t->n;
                        }
                        break;
                default:
                        if (t && at + t->n <= len)
                                memcpy(buf + at, t->p, t->n);
                }
        }
        return len;
}

int main(int argc, char **argv)
{
        static uint8_t buf[FUZZ_MAX_INPUT];
        const char *env = getenv("SEGOPS_FUZZ_ITERATIONS");
        unsigned long iterations = env ? strtoul(env, NULL, 10) : 20000;
        uint64_t rng = 0x9e3779b97f4a7c15ull;
        unsigned nbuiltin = 0, nfiles = 0;
        struct stat sb;
        int bad = 0;

        /* A failed assertion, or a sanitizer with abort_on_error. */
        signal(SIGABRT, on_fatal);
        for (int i = 1; i < argc; i++) {
                if (strncmp(argv[i], "-dict=", 6) == 0)
                        bad |= load_dict(argv[i] + 6);
                else if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode))
                        bad |= run_dir(argv[i], &nfiles);
                else {
                        bad |= run_file(argv[i]);
                        nfiles++;
                }
        }
        while (fuzz_seed && nseeds < MAX_SEEDS) {
                size_t n = fuzz_seed(nbuiltin, buf, sizeof(buf));

                if (!n)
                        break;
                add(seeds, &nseeds, MAX_SEEDS, buf, n);
                nbuiltin++;
        }
        for (unsigned long it = 0; nseeds && it < iterations; it++) {
                const struct bytes *s = &seeds[it % nseeds];
                size_t len = s->n;

                memcpy(buf, s->p, len);
                len = mutate(buf, len, sizeof(buf), &rng);
                run(buf, len);
        }
        printf("%u files, then %lu mutations of %u seeds (%u built in), %u dictionary tokens: "
               "no fault\n",
               nfiles, nseeds ? iterations : 0, nseeds, nbuiltin, ntokens);
        for (unsigned i = 0; i < nseeds; i++)
                free(seeds[i].p);
        for (unsigned i = 0; i < ntokens; i++)
                free(tokens[i].p);
        return bad;
}
