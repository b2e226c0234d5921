/* reload.h - SIGHUP: apply what can change without a restart. */
#ifndef SEGOPSD_RELOAD_H
#define SEGOPSD_RELOAD_H

struct daemon;

/* Re-read d->cfg.path and the key. All or nothing: on any error the
 * running configuration stays and the error is logged. Returns 0 or a
 * negative errno. */
int daemon_reload(struct daemon *d);

#endif
