/* epoll(7) backend, level-triggered.  Included by selector.c only when GG_HAVE_EPOLL.
 *
 * We keep our own fd -> mask table even though epoll_ctl reports EEXIST/ENOENT itself:
 * a GG_NONE registration is kept *out* of the kernel set, because epoll always reports
 * EPOLLHUP/EPOLLERR whatever the interest, and a level-triggered hang-up on an fd the caller
 * is not watching would wake the loop forever.  The table makes that fd still "present". */
#include <sys/epoll.h>

typedef struct gg_epoll {
    int epfd;                   /* the epoll instance; pollable, so asyncio can watch it */
    int *masks;                 /* fd -> GG_* interest, -1 = not registered */
    int cap;                    /* entries in masks */
    struct epoll_event *events; /* epoll_wait output, grown to the caller's maxfired */
    int nevents;                /* entries in events */
} gg_epoll;

static gg_selector *gg_epoll_create(int setsize) {
    gg_epoll *ep = calloc(1, sizeof(*ep));
    if (ep == NULL) return NULL;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC); /* never leak the set into exec'd children */
    if (ep->epfd < 0 || gg_table_reserve(&ep->masks, &ep->cap, setsize > 0 ? setsize - 1 : 0) < 0) {
        int e = errno;
        if (ep->epfd >= 0) close(ep->epfd);
        free(ep);
        errno = e;
        return NULL;
    }
    return (gg_selector *)ep;
}

static void gg_epoll_free(gg_selector *sel) {
    gg_epoll *ep = (gg_epoll *)sel;
    if (ep == NULL) return;
    close(ep->epfd);
    free(ep->masks);
    free(ep->events);
    free(ep);
}

/* Apply interest `mask` in the kernel for an fd whose previous interest was `old`. */
static int gg_epoll_apply(gg_epoll *ep, int fd, int old, int mask) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev)); /* valgrind/ASan: the union's padding is read by the kernel */
    ev.data.fd = fd;
    if (mask & GG_READABLE) ev.events |= EPOLLIN;
    if (mask & GG_WRITABLE) ev.events |= EPOLLOUT;
    if (mask == GG_NONE) return old == GG_NONE ? 0 : epoll_ctl(ep->epfd, EPOLL_CTL_DEL, fd, &ev);
    return epoll_ctl(ep->epfd, old == GG_NONE ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
}

static int gg_epoll_add(gg_selector *sel, int fd, int mask) {
    gg_epoll *ep = (gg_epoll *)sel;
    if (gg_table_reserve(&ep->masks, &ep->cap, fd) < 0) return -1;
    if (ep->masks[fd] != -1) {
        errno = EEXIST;
        return -1;
    }
    mask &= GG_READABLE | GG_WRITABLE;
    if (gg_epoll_apply(ep, fd, GG_NONE, mask) < 0) return -1;
    ep->masks[fd] = mask;
    return 0;
}

static int gg_epoll_mod(gg_selector *sel, int fd, int mask) {
    gg_epoll *ep = (gg_epoll *)sel;
    int old = gg_table_get(ep->masks, ep->cap, fd);
    if (old == -1) {
        errno = ENOENT;
        return -1;
    }
    mask &= GG_READABLE | GG_WRITABLE;
    if (gg_epoll_apply(ep, fd, old, mask) < 0) return -1;
    ep->masks[fd] = mask;
    return 0;
}

static int gg_epoll_remove(gg_selector *sel, int fd) {
    gg_epoll *ep = (gg_epoll *)sel;
    int old = gg_table_get(ep->masks, ep->cap, fd);
    if (old == -1) {
        errno = ENOENT;
        return -1;
    }
    /* Forget the fd even if the kernel DEL fails (e.g. EBADF: closed too early), so the
     * number can be registered again once reused. */
    ep->masks[fd] = -1;
    return gg_epoll_apply(ep, fd, old, GG_NONE);
}

static int gg_epoll_poll(gg_selector *sel, gg_fired *fired, int maxfired, int timeout_ms) {
    gg_epoll *ep = (gg_epoll *)sel;
    if (maxfired <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (maxfired > ep->nevents) {
        struct epoll_event *n = realloc(ep->events, (size_t)maxfired * sizeof(*n));
        if (n == NULL) {
            errno = ENOMEM;
            return -1;
        }
        ep->events = n;
        ep->nevents = maxfired;
    }
    int n = epoll_wait(ep->epfd, ep->events, maxfired, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        uint32_t e = ep->events[i].events;
        int fd = ep->events[i].data.fd;
        int want = gg_table_get(ep->masks, ep->cap, fd);
        int mask = 0;
        if (e & EPOLLIN) mask |= GG_READABLE;
        if (e & EPOLLOUT) mask |= GG_WRITABLE;
        /* hang-up / error: let the caller's read (and write, if it waits to) see it */
        if (e & (EPOLLERR | EPOLLHUP)) mask |= GG_READABLE | (want > 0 ? (want & GG_WRITABLE) : 0);
        fired[i].fd = fd;
        fired[i].mask = mask;
    }
    return n;
}

static int gg_epoll_fileno(gg_selector *sel) {
    return ((gg_epoll *)sel)->epfd;
}

const gg_selector_ops gg_epoll_ops = {
    "epoll", gg_epoll_create, gg_epoll_free, gg_epoll_add, gg_epoll_mod,
    gg_epoll_remove, gg_epoll_poll, gg_epoll_fileno,
};
