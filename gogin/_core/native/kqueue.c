/* kqueue(2) backend (macOS, BSD).  Included by selector.c only when GG_HAVE_KQUEUE.
 *
 * Read and write interest are two separate kernel filters (EVFILT_READ, EVFILT_WRITE) and
 * kevent() reports them as two events; we merge them back into one gg_fired per fd.
 * Our fd -> mask table gives the same EEXIST/ENOENT bookkeeping as the other backends and
 * tells mod() which filters to add or delete.  GG_NONE means no filter in the kernel. */
#include <fcntl.h>
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>

typedef struct gg_kqueue {
    int kqfd;              /* the kqueue; pollable, so asyncio can watch it */
    int *masks;            /* fd -> GG_* interest, -1 = not registered */
    int cap;               /* entries in masks */
    int *slot;             /* fd -> index in the current fired[] (validated, never cleared) */
    int scap;              /* entries in slot */
    struct kevent *events; /* kevent() output, grown to the caller's maxfired */
    int nevents;           /* entries in events */
} gg_kqueue;

static gg_selector *gg_kqueue_create(int setsize) {
    gg_kqueue *kq = calloc(1, sizeof(*kq));
    if (kq == NULL) return NULL;
    kq->kqfd = kqueue();
    int hint = setsize > 0 ? setsize - 1 : 0;
    if (kq->kqfd < 0 || fcntl(kq->kqfd, F_SETFD, FD_CLOEXEC) < 0 ||
        gg_table_reserve(&kq->masks, &kq->cap, hint) < 0 ||
        gg_table_reserve(&kq->slot, &kq->scap, hint) < 0) {
        int e = errno;
        if (kq->kqfd >= 0) close(kq->kqfd);
        free(kq->masks);
        free(kq->slot);
        free(kq);
        errno = e;
        return NULL;
    }
    return (gg_selector *)kq;
}

static void gg_kqueue_free(gg_selector *sel) {
    gg_kqueue *kq = (gg_kqueue *)sel;
    if (kq == NULL) return;
    close(kq->kqfd);
    free(kq->masks);
    free(kq->slot);
    free(kq->events);
    free(kq);
}

/* Move the kernel filters of fd from interest `old` to `mask` in one kevent() call. */
static int gg_kqueue_apply(gg_kqueue *kq, int fd, int old, int mask) {
    struct kevent ch[2];
    int n = 0;
    int on = mask & ~old, off = old & ~mask;
    if (on & GG_READABLE) EV_SET(&ch[n++], fd, EVFILT_READ, EV_ADD, 0, 0, NULL);
    if (off & GG_READABLE) EV_SET(&ch[n++], fd, EVFILT_READ, EV_DELETE, 0, 0, NULL);
    if (on & GG_WRITABLE) EV_SET(&ch[n++], fd, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
    if (off & GG_WRITABLE) EV_SET(&ch[n++], fd, EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
    if (n == 0) return 0;
    /* no event list: a failing change makes kevent() return -1 with errno */
    return kevent(kq->kqfd, ch, n, NULL, 0, NULL) < 0 ? -1 : 0;
}

static int gg_kqueue_add(gg_selector *sel, int fd, int mask) {
    gg_kqueue *kq = (gg_kqueue *)sel;
    if (gg_table_reserve(&kq->masks, &kq->cap, fd) < 0) return -1;
    if (gg_table_reserve(&kq->slot, &kq->scap, fd) < 0) return -1;
    if (kq->masks[fd] != -1) {
        errno = EEXIST;
        return -1;
    }
    mask &= GG_READABLE | GG_WRITABLE;
    if (gg_kqueue_apply(kq, fd, GG_NONE, mask) < 0) {
        int e = errno;
        gg_kqueue_apply(kq, fd, mask, GG_NONE); /* undo a half-applied pair of filters */
        errno = e;
        return -1;
    }
    kq->masks[fd] = mask;
    return 0;
}

static int gg_kqueue_mod(gg_selector *sel, int fd, int mask) {
    gg_kqueue *kq = (gg_kqueue *)sel;
    int old = gg_table_get(kq->masks, kq->cap, fd);
    if (old == -1) {
        errno = ENOENT;
        return -1;
    }
    mask &= GG_READABLE | GG_WRITABLE;
    if (gg_kqueue_apply(kq, fd, old, mask) < 0) return -1;
    kq->masks[fd] = mask;
    return 0;
}

static int gg_kqueue_remove(gg_selector *sel, int fd) {
    gg_kqueue *kq = (gg_kqueue *)sel;
    int old = gg_table_get(kq->masks, kq->cap, fd);
    if (old == -1) {
        errno = ENOENT;
        return -1;
    }
    kq->masks[fd] = -1; /* forget it even if the kernel says EBADF, so reuse works */
    return gg_kqueue_apply(kq, fd, old, GG_NONE);
}

static int gg_kqueue_poll(gg_selector *sel, gg_fired *fired, int maxfired, int timeout_ms) {
    gg_kqueue *kq = (gg_kqueue *)sel;
    if (maxfired <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (maxfired > kq->nevents) {
        struct kevent *ev = realloc(kq->events, (size_t)maxfired * sizeof(*ev));
        if (ev == NULL) {
            errno = ENOMEM;
            return -1;
        }
        kq->events = ev;
        kq->nevents = maxfired;
    }
    struct timespec ts, *tp = NULL; /* NULL: block forever */
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    int n = kevent(kq->kqfd, NULL, 0, kq->events, maxfired, tp);
    if (n < 0) return errno == EINTR ? 0 : -1;
    int count = 0;
    for (int i = 0; i < n; i++) {
        struct kevent *e = &kq->events[i];
        int fd = (int)e->ident;
        int want = gg_table_get(kq->masks, kq->cap, fd);
        if (want == -1) continue; /* removed meanwhile: stale */
        int mask = e->filter == EVFILT_WRITE ? GG_WRITABLE : GG_READABLE;
        /* hang-up / error: let the caller's read (and write, if it waits to) see it */
        if (e->flags & (EV_EOF | EV_ERROR)) mask |= GG_READABLE | (want & GG_WRITABLE);
        int s = kq->slot[fd];
        if (s >= 0 && s < count && fired[s].fd == fd) { /* second filter of the same fd */
            fired[s].mask |= mask;
            continue;
        }
        kq->slot[fd] = count;
        fired[count].fd = fd;
        fired[count].mask = mask;
        count++;
    }
    return count;
}

static int gg_kqueue_fileno(gg_selector *sel) {
    return ((gg_kqueue *)sel)->kqfd;
}

const gg_selector_ops gg_kqueue_ops = {
    "kqueue", gg_kqueue_create, gg_kqueue_free, gg_kqueue_add, gg_kqueue_mod,
    gg_kqueue_remove, gg_kqueue_poll, gg_kqueue_fileno,
};
