/* Selector backends and their registry (redis ae.c pattern: one translation unit that
 * #includes every backend this platform has, so each stays a set of static functions). */
#include "selector.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* fd -> int table shared by the backends (membership/mask or index; -1 = absent).
 * Grows by doubling to cover fd; fds are small dense ints, so a flat array beats a hash. */
static int gg_table_reserve(int **tab, int *cap, int fd) {
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (fd < *cap) return 0;
    int ncap = *cap > 0 ? *cap : 64;
    while (ncap <= fd) {
        if (ncap > (1 << 29)) { /* no fd table is that large: refuse rather than overflow */
            errno = ENOMEM;
            return -1;
        }
        ncap *= 2;
    }
    int *n = realloc(*tab, (size_t)ncap * sizeof(int));
    if (n == NULL) {
        errno = ENOMEM;
        return -1;
    }
    for (int i = *cap; i < ncap; i++) n[i] = -1;
    *tab = n;
    *cap = ncap;
    return 0;
}

/* Lookup without growing: -1 if fd is outside the table or absent. */
static int gg_table_get(const int *tab, int cap, int fd) {
    return (fd >= 0 && fd < cap) ? tab[fd] : -1;
}

#ifdef GG_HAVE_EPOLL
#include "epoll.c"
#endif
#ifdef GG_HAVE_KQUEUE
#include "kqueue.c"
#endif
#include "poll.c"

/* Most capable first: the order backends() reports. */
static const gg_selector_ops *const gg_backends[] = {
#ifdef GG_HAVE_EPOLL
    &gg_epoll_ops,
#endif
#ifdef GG_HAVE_KQUEUE
    &gg_kqueue_ops,
#endif
    &gg_poll_ops,
};

#define GG_NBACKENDS ((int)(sizeof(gg_backends) / sizeof(gg_backends[0])))

const gg_selector_ops *gg_selector_find(const char *name) {
    if (name == NULL) return NULL;
    for (int i = 0; i < GG_NBACKENDS; i++)
        if (strcmp(gg_backends[i]->name, name) == 0) return gg_backends[i];
    return NULL;
}

const gg_selector_ops *gg_selector_default(void) {
    return gg_selector_find(GG_DEFAULT_SELECTOR); /* config.h guarantees it is compiled in */
}

int gg_selector_count(void) {
    return GG_NBACKENDS;
}

const gg_selector_ops *gg_selector_at(int i) {
    return (i >= 0 && i < GG_NBACKENDS) ? gg_backends[i] : NULL;
}
