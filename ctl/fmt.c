/* fmt.c - numbers for people: counts with thousands separators, short
 * rates (1.2k), byte sizes in binary units and ages (2m13s), the forms
 * segopsctl status and health print. Each writes a NUL-terminated string
 * into the caller's buffer (CTL_FMT_LEN is always enough) and returns it.
 */
#include "report.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

const char *ctl_fmt_count(uint64_t n, char *buf, size_t len)
{
        char digits[24];
        size_t nd, o = 0;

        nd = (size_t)snprintf(digits, sizeof(digits), "%" PRIu64, n);
        for (size_t i = 0; i < nd && o + 1 < len; i++) {
                if (i > 0 && (nd - i) % 3 == 0 && o + 2 < len)
                        buf[o++] = ',';
                buf[o++] = digits[i];
        }
        if (len > 0)
                buf[o < len ? o : len - 1] = '\0';
        return buf;
}

const char *ctl_fmt_short(double v, char *buf, size_t len)
{
        static const char units[] = { 'k', 'M', 'G', 'T' };
        int u = -1;

        if (!isfinite(v) || v < 0)
                v = 0;
        if (v < 10 && v != floor(v)) {
                snprintf(buf, len, "%.1f", v);
                return buf;
        }
        if (v < 999.5) {
                snprintf(buf, len, "%.0f", v);
                return buf;
        }
        while (v >= 999.5 && u < 3) {
                v /= 1000;
                u++;
        }
        snprintf(buf, len, v < 9.95 ? "%.1f%c" : "%.0f%c", v, units[u]);
        return buf;
}

const char *ctl_fmt_bytes(uint64_t n, char *buf, size_t len)
{
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
        double v = (double)n;
        int u = -1;

        if (n < 1024) {
                snprintf(buf, len, "%" PRIu64 " B", n);
                return buf;
        }
        while (v >= 1024 && u < 3) {
                v /= 1024;
                u++;
        }
        snprintf(buf, len, "%.1f %s", v, units[u]);
        return buf;
}

const char *ctl_fmt_age(double seconds, char *buf, size_t len)
{
        uint64_t s;

        if (!isfinite(seconds) || seconds < 0)
                seconds = 0;
        if (seconds < 10 && seconds != floor(seconds)) {
                snprintf(buf, len, "%.1fs", seconds);
                return buf;
        }
        s = (uint64_t)(seconds + 0.5);
        if (s < 60)
                snprintf(buf, len, "%" PRIu64 "s", s);
        else if (s < 3600)
                snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
        else if (s < 86400)
                snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
        else
                snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
        return buf;
}

bool ctl_json_num(json_t *obj, const char *key, double *ret)
{
        json_t *v = json_object_get(obj, key); /* NULL-safe, and for non-objects */

        if (!json_is_number(v))
                return false;
        *ret = json_number_value(v);
        return true;
}
