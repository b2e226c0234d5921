/* time.c - the one timestamp form of the wire format, and its reader.
 *
 * Every time that goes upstream is written one way,
 * YYYY-MM-DDTHH:MM:SS.mmmZ (UTC, exactly three fraction digits), from
 * Unix milliseconds; every time a client sends as a string is read by
 * one strict RFC 3339 reader (section 5.6), offsets converted to UTC and
 * extra fraction digits truncated. Both work on the proleptic Gregorian
 * calendar by arithmetic alone (no tables, no libc time functions, no
 * time zone), within the years four digits can express. Part of
 * proto_core: libc only, no state, linked into libshim too.
 */
#include "proto.h"

#include <errno.h>
#include <stdint.h>

#define MS_PER_DAY INT64_C(86400000)

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil): exact for every year, no tables, no libc time. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = y - era * 400;
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d)
{
        int64_t era, doe, yoe, doy, mp, y;
        unsigned m;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = z - era * 146097;
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        y = yoe + era * 400;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *ret_d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
        m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
        *ret_m = m;
        *ret_y = y + (m <= 2);
}

static bool is_leap(int64_t y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
        static const unsigned char dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static void put_digits(char *p, unsigned v, int width)
{
        while (width-- > 0) {
                p[width] = (char)('0' + v % 10);
                v /= 10;
        }
}

void proto_time_format(int64_t ms, char out[PROTO_TIME_LEN + 1])
{
        int64_t days, rem, y;
        unsigned m, d, sod;

        if (ms < PROTO_TIME_MIN_MS)
                ms = PROTO_TIME_MIN_MS;
        if (ms > PROTO_TIME_MAX_MS)
                ms = PROTO_TIME_MAX_MS;
        /* Floor division, so instants before 1970 land on the right day. */
        days = ms / MS_PER_DAY;
        rem = ms % MS_PER_DAY;
        if (rem < 0) {
                rem += MS_PER_DAY;
                days--;
        }
        civil_from_days(days, &y, &m, &d);
        sod = (unsigned)(rem / 1000);
        put_digits(out, (unsigned)y, 4);
        out[4] = '-';
        put_digits(out + 5, m, 2);
        out[7] = '-';
        put_digits(out + 8, d, 2);
        out[10] = 'T';
        put_digits(out + 11, sod / 3600, 2);
        out[13] = ':';
        put_digits(out + 14, sod / 60 % 60, 2);
        out[16] = ':';
        put_digits(out + 17, sod % 60, 2);
        out[19] = '.';
        put_digits(out + 20, (unsigned)(rem % 1000), 3);
        out[23] = 'Z';
        out[24] = '\0';
}

/* Read exactly `width` decimal digits at s[*pos]. */
static bool read_digits(const char *s, size_t n, size_t *pos, int width, unsigned *ret)
{
        unsigned v = 0;

        if (n - *pos < (size_t)width)
                return false;
        for (int i = 0; i < width; i++) {
                char c = s[*pos + (size_t)i];
                if (c < '0' || c > '9')
                        return false;
                v = v * 10 + (unsigned)(c - '0');
        }
        *pos += (size_t)width;
        *ret = v;
        return true;
}

static bool read_char(const char *s, size_t n, size_t *pos, char c)
{
        if (*pos >= n || s[*pos] != c)
                return false;
        (*pos)++;
        return true;
}

/* An RFC 3339 date-time as written, before its fields are checked. */
struct rfc3339 {
        unsigned year, mon, day, hour, min, sec;
        unsigned frac_ms; /* the first three fraction digits */
        int offset_min;   /* local time minus UTC */
};

/* full-date, the separator, and partial-time up to the seconds:
 * YYYY-MM-DD, 'T' (or 't' or ' ', as RFC 3339 allows), HH:MM:SS. */
static bool read_date_time(const char *s, size_t n, size_t *pos, struct rfc3339 *t)
{
        if (!read_digits(s, n, pos, 4, &t->year) || !read_char(s, n, pos, '-') ||
            !read_digits(s, n, pos, 2, &t->mon) || !read_char(s, n, pos, '-') ||
            !read_digits(s, n, pos, 2, &t->day))
                return false;
        if (*pos >= n || (s[*pos] != 'T' && s[*pos] != 't' && s[*pos] != ' '))
                return false;
        (*pos)++;
        return read_digits(s, n, pos, 2, &t->hour) && read_char(s, n, pos, ':') &&
               read_digits(s, n, pos, 2, &t->min) && read_char(s, n, pos, ':') &&
               read_digits(s, n, pos, 2, &t->sec);
}

/* An optional fraction, "." and at least one digit: milliseconds from
 * its first three digits, the rest dropped (truncation). */
static bool read_fraction(const char *s, size_t n, size_t *pos, unsigned *ret_ms)
{
        unsigned frac = 0;
        int digits = 0;

        *ret_ms = 0;
        if (*pos >= n || s[*pos] != '.')
                return true;
        (*pos)++;
        if (*pos >= n || s[*pos] < '0' || s[*pos] > '9')
                return false;
        for (; *pos < n && s[*pos] >= '0' && s[*pos] <= '9'; (*pos)++) {
                if (digits < 3) {
                        frac = frac * 10 + (unsigned)(s[*pos] - '0');
                        digits++;
                }
        }
        for (; digits < 3; digits++)
                frac *= 10;
        *ret_ms = frac;
        return true;
}

/* time-offset: 'Z' (or 'z'), or +hh:mm / -hh:mm, as minutes. */
static bool read_offset(const char *s, size_t n, size_t *pos, int *ret_min)
{
        unsigned oh, om;
        int sign;

        if (*pos >= n)
                return false;
        if (s[*pos] == 'Z' || s[*pos] == 'z') {
                (*pos)++;
                *ret_min = 0;
                return true;
        }
        if (s[*pos] != '+' && s[*pos] != '-')
                return false;
        sign = s[*pos] == '+' ? 1 : -1;
        (*pos)++;
        if (!read_digits(s, n, pos, 2, &oh) || !read_char(s, n, pos, ':') ||
            !read_digits(s, n, pos, 2, &om) || oh > 23 || om > 59)
                return false;
        *ret_min = sign * (int)(oh * 60 + om);
        return true;
}

/* Strict RFC 3339 date-time (section 5.6), nothing before or after it.
 * A leap second (:60) is accepted and read as HH:MM:59.999, the last
 * instant this format can name before the next minute, so order is kept
 * without pretending to know the leap second table. */
int proto_time_parse(const char *s, size_t n, int64_t *ret_ms)
{
        struct rfc3339 t;
        size_t pos = 0;
        int64_t ms;

        if (!s || !ret_ms)
                return -EINVAL;
        if (!read_date_time(s, n, &pos, &t) || !read_fraction(s, n, &pos, &t.frac_ms) ||
            !read_offset(s, n, &pos, &t.offset_min) || pos != n)
                return -EINVAL;
        if (t.mon < 1 || t.mon > 12 || t.day < 1 || t.day > days_in_month(t.year, t.mon) ||
            t.hour > 23 || t.min > 59 || t.sec > 60)
                return -EINVAL;
        if (t.sec == 60) {
                t.sec = 59;
                t.frac_ms = 999;
        }
        ms = days_from_civil(t.year, t.mon, t.day) * MS_PER_DAY + (int64_t)t.hour * 3600000 +
             (int64_t)t.min * 60000 + (int64_t)t.sec * 1000 + t.frac_ms;
        /* Local time = UTC + offset, so UTC = local - offset. */
        ms -= (int64_t)t.offset_min * 60000;
        if (ms < PROTO_TIME_MIN_MS || ms > PROTO_TIME_MAX_MS)
                return -EINVAL;
        *ret_ms = ms;
        return 0;
}
