/* The selector backend contract (redis "ae" style): one ops table per OS mechanism.
 *
 * Masks are gogin's own bits; each backend translates to and from EPOLLIN/EVFILT_READ/POLLIN...
 * Error and hang-up conditions are reported as GG_READABLE (plus GG_WRITABLE when writable
 * interest is set) so the caller reads/writes and sees EOF or the error from the syscall itself.
 *
 * All functions return 0 on success and -1 with errno set on failure; poll returns the number
 * of fired entries (0 on timeout or EINTR); create returns NULL with errno set.
 * Bookkeeping is the same on every backend: add of a present fd -> EEXIST, mod/remove of an
 * absent fd -> ENOENT, mask GG_NONE is allowed (registered, no interest).  The caller closes an
 * fd only after remove.  setsize is a hint; backends grow as needed.
 */
#ifndef GG_SELECTOR_H
#define GG_SELECTOR_H

#include "config.h"

#define GG_NONE 0     /* registered, no interest */
#define GG_READABLE 1 /* readable, peer closed, or error */
#define GG_WRITABLE 2 /* writable (or error, when asked for) */

typedef struct gg_fired {
    int fd;   /* the ready descriptor */
    int mask; /* GG_READABLE | GG_WRITABLE */
} gg_fired;

typedef struct gg_selector gg_selector; /* opaque; each backend defines its own layout */

typedef struct gg_selector_ops {
    const char *name;                                     /* "epoll", "kqueue", "poll" */
    gg_selector *(*create)(int setsize);                  /* NULL + errno on failure */
    void (*free)(gg_selector *sel);                       /* closes the kernel object */
    int (*add)(gg_selector *sel, int fd, int mask);       /* EEXIST if present */
    int (*mod)(gg_selector *sel, int fd, int mask);       /* ENOENT if absent */
    int (*remove)(gg_selector *sel, int fd);              /* ENOENT if absent */
    int (*poll)(gg_selector *sel, gg_fired *fired, int maxfired, int timeout_ms);
    int (*fileno)(gg_selector *sel);                      /* pollable fd, or -1 (poll) */
} gg_selector_ops;

const gg_selector_ops *gg_selector_default(void);          /* GG_DEFAULT_SELECTOR */
const gg_selector_ops *gg_selector_find(const char *name); /* NULL if not compiled in */
int gg_selector_count(void);                               /* backends compiled in */
const gg_selector_ops *gg_selector_at(int i);              /* NULL if out of range */

#endif /* GG_SELECTOR_H */
