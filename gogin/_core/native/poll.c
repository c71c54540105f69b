/* poll(2) backend: POSIX, always compiled; the fallback and a reference for the contract.
 *
 * A dense pollfd array (what poll() wants) plus an fd -> index table, so add/mod/remove are
 * O(1): remove swaps the last entry into the hole.  A GG_NONE entry stores ~fd (negative):
 * poll() ignores negative fds entirely, so a hung-up fd nobody watches cannot make poll()
 * return at once forever (POLLHUP/POLLERR are reported even with events == 0).
 *
 * A poll set is not a kernel object, so fileno() is -1: the hub then registers each fd with
 * the asyncio loop itself instead of one selector fd. */
#include <poll.h>

typedef struct gg_pollset {
    struct pollfd *pfds; /* dense array handed to poll() */
    int n;               /* entries in use */
    int cap;             /* entries allocated */
    int *index;          /* fd -> position in pfds, -1 = not registered */
    int icap;            /* entries in index */
    int next;            /* where the next scan starts: fairness when maxfired < ready */
} gg_pollset;

/* The registered fd of an entry, whether active (fd) or parked for GG_NONE (~fd). */
static int gg_poll_fd(const struct pollfd *p) {
    return p->fd < 0 ? ~p->fd : p->fd;
}

static void gg_poll_set(struct pollfd *p, int fd, int mask) {
    p->fd = mask == GG_NONE ? ~fd : fd;
    p->events = (short)(((mask & GG_READABLE) ? POLLIN : 0) | ((mask & GG_WRITABLE) ? POLLOUT : 0));
    p->revents = 0;
}

static gg_selector *gg_poll_create(int setsize) {
    gg_pollset *ps = calloc(1, sizeof(*ps));
    if (ps == NULL) return NULL;
    ps->cap = setsize > 16 ? setsize : 16;
    ps->pfds = malloc((size_t)ps->cap * sizeof(*ps->pfds));
    if (ps->pfds == NULL || gg_table_reserve(&ps->index, &ps->icap, ps->cap - 1) < 0) {
        free(ps->pfds);
        free(ps);
        errno = ENOMEM;
        return NULL;
    }
    return (gg_selector *)ps;
}

static void gg_poll_free(gg_selector *sel) {
    gg_pollset *ps = (gg_pollset *)sel;
    if (ps == NULL) return;
    free(ps->pfds);
    free(ps->index);
    free(ps);
}

static int gg_poll_add(gg_selector *sel, int fd, int mask) {
    gg_pollset *ps = (gg_pollset *)sel;
    if (gg_table_reserve(&ps->index, &ps->icap, fd) < 0) return -1;
    if (ps->index[fd] != -1) {
        errno = EEXIST;
        return -1;
    }
    if (ps->n == ps->cap) {
        int ncap = ps->cap * 2;
        struct pollfd *p = realloc(ps->pfds, (size_t)ncap * sizeof(*p));
        if (p == NULL) {
            errno = ENOMEM;
            return -1;
        }
        ps->pfds = p;
        ps->cap = ncap;
    }
    gg_poll_set(&ps->pfds[ps->n], fd, mask & (GG_READABLE | GG_WRITABLE));
    ps->index[fd] = ps->n++;
    return 0;
}

static int gg_poll_mod(gg_selector *sel, int fd, int mask) {
    gg_pollset *ps = (gg_pollset *)sel;
    int i = gg_table_get(ps->index, ps->icap, fd);
    if (i == -1) {
        errno = ENOENT;
        return -1;
    }
    gg_poll_set(&ps->pfds[i], fd, mask & (GG_READABLE | GG_WRITABLE));
    return 0;
}

static int gg_poll_remove(gg_selector *sel, int fd) {
    gg_pollset *ps = (gg_pollset *)sel;
    int i = gg_table_get(ps->index, ps->icap, fd);
    if (i == -1) {
        errno = ENOENT;
        return -1;
    }
    int last = --ps->n;
    if (i != last) { /* swap-remove keeps the array dense */
        ps->pfds[i] = ps->pfds[last];
        ps->index[gg_poll_fd(&ps->pfds[i])] = i;
    }
    ps->index[fd] = -1;
    return 0;
}

static int gg_poll_poll(gg_selector *sel, gg_fired *fired, int maxfired, int timeout_ms) {
    gg_pollset *ps = (gg_pollset *)sel;
    if (maxfired <= 0) {
        errno = EINVAL;
        return -1;
    }
    int r = poll(ps->pfds, (nfds_t)ps->n, timeout_ms);
    if (r < 0) return errno == EINTR ? 0 : -1;
    if (r == 0 || ps->n == 0) return 0;
    /* Scan from where the last call stopped, so with more ready fds than maxfired the ones
     * at the end of the array are not starved (epoll round-robins its ready list likewise). */
    int count = 0, start = ps->next < ps->n ? ps->next : 0, j = start;
    for (int k = 0; k < ps->n && count < maxfired; k++, j = (j + 1 == ps->n ? 0 : j + 1)) {
        struct pollfd *p = &ps->pfds[j];
        if (p->fd < 0 || p->revents == 0) continue;
        int mask = 0;
        if (p->revents & POLLIN) mask |= GG_READABLE;
        if (p->revents & POLLOUT) mask |= GG_WRITABLE;
        /* hang-up / error / bad fd: let the caller's read (and write, if it waits to) see it */
        if (p->revents & (POLLERR | POLLHUP | POLLNVAL))
            mask |= GG_READABLE | ((p->events & POLLOUT) ? GG_WRITABLE : 0);
        fired[count].fd = p->fd;
        fired[count].mask = mask;
        count++;
    }
    ps->next = j;
    return count;
}

static int gg_poll_fileno(gg_selector *sel) {
    (void)sel;
    return -1; /* not pollable: see the comment at the top */
}

const gg_selector_ops gg_poll_ops = {
    "poll", gg_poll_create, gg_poll_free, gg_poll_add, gg_poll_mod,
    gg_poll_remove, gg_poll_poll, gg_poll_fileno,
};
