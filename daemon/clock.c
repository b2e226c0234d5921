/* clock.c - the daemon's wall clock, in one place so tests link it. */
#include <time.h>

#include "daemon.h"

int64_t daemon_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
