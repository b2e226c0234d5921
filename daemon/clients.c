/* clients.c - the per-process table behind stats' "clients": bounded
 * to CLIENTS_MAX entries, least recently reporting one evicted (and
 * counted). The pid comes from the socket's credentials (SO_PEERCRED
 * on the stream, SCM_CREDENTIALS on datagrams), so a client cannot speak
 * for another process; only when the kernel gave none is it the pid the
 * message declares, kept apart and labelled as such: a declared pid
 * never adds to a verified one's entry. Counts saturate instead of
 * wrapping. */
#include "clients.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void read_comm(pid_t pid, char *out, size_t outlen)
{
        char path[64];
        ssize_t n;
        int fd;

        out[0] = '\0';
        snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        n = read(fd, out, outlen - 1);
        close(fd);
        if (n <= 0) {
                out[0] = '\0';
                return;
        }
        out[n] = '\0';
        out[strcspn(out, "\n")] = '\0';
        /* Any process can name itself anything, and the kernel cuts the
         * name at 15 bytes, maybe inside a UTF-8 sequence: keep
         * printable ASCII only, so stats always has a valid string. */
        for (char *p = out; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        *p = '?';
}

void clients_dropped(struct clients *c, const struct client_id *id, uint64_t n, uint64_t now_ms)
{
        struct client_entry *slot = NULL, *oldest = &c->e[0];

        for (size_t i = 0; i < CLIENTS_MAX; i++) {
                struct client_entry *e = &c->e[i];
                if (e->last_ms != 0 && e->id.pid == id->pid && e->id.verified == id->verified &&
                    (!id->verified || e->id.uid == id->uid)) {
                        slot = e;
                        break;
                }
                if (e->last_ms < oldest->last_ms)
                        oldest = e;
        }
        if (!slot) {
                slot = oldest;
                if (slot->last_ms != 0)
                        c->evicted++;
                memset(slot, 0, sizeof(*slot));
                slot->id = *id;
                if (!id->verified)
                        slot->id.uid = 0;
                if (id->pid > 0)
                        read_comm(id->pid, slot->comm, sizeof(slot->comm));
        }
        slot->dropped = clients_count_add(slot->dropped, n);
        slot->last_ms = now_ms ? now_ms : 1;
}

json_t *clients_json(const struct clients *c)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < CLIENTS_MAX; i++) {
                const struct client_entry *e = &c->e[i];
                json_t *j;

                if (!e->last_ms)
                        continue;
                j = json_pack("{s:i s:s s:I s:s}", "pid", (int)e->id.pid, "comm", e->comm,
                              "dropped", (json_int_t)e->dropped, "identity",
                              e->id.verified ? "verified"
                              : e->id.pid    ? "declared"
                                             : "unknown");
                if (j && e->id.verified)
                        json_object_set_new(j, "uid", json_integer((json_int_t)e->id.uid));
                json_array_append_new(a, j);
        }
        return a;
}
