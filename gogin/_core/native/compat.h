/* Socket calls whose spelling differs between platforms, each behind one gg_ name.
 *
 * The .pyx files that make syscalls (hub, fanout, the bench client) reach this header through
 * includes/compat.pxd and never name accept4, SOCK_NONBLOCK, SOCK_CLOEXEC or MSG_NOSIGNAL
 * themselves, so one source builds where those do not exist (macOS).
 *
 *   Linux, FreeBSD 10+, DragonFly 4.4+, OpenBSD 5.7+, NetBSD 8+: accept4(2) and the
 *     SOCK_NONBLOCK | SOCK_CLOEXEC type flags make a descriptor non-blocking and close-on-exec
 *     in the call that creates it; MSG_NOSIGNAL stops a send to a reset peer from raising
 *     SIGPIPE (it fails with EPIPE instead).
 *   macOS (and any platform without them): accept(2) / socket(2), then fcntl(2) for O_NONBLOCK
 *     and FD_CLOEXEC; SO_NOSIGPIPE set once per socket replaces MSG_NOSIGNAL on every send.
 *     The close-on-exec flag then lands a moment after the descriptor exists: a fork() from
 *     another thread in between would inherit it (the core itself runs on one thread).
 *
 * CPython ignores SIGPIPE by default; the flag matters when gogin is embedded in a process
 * that restored the default action (a program that would then die on a client's reset).
 *
 * -DGG_COMPAT_POSIX forces the portable branch everywhere, so Linux can build and test the
 * code macOS runs (there without SO_NOSIGPIPE, which Linux lacks).
 *
 * accept4 is declared by glibc only under _GNU_SOURCE: every includer is a Cython module, whose
 * C file includes Python.h (pyconfig.h defines _GNU_SOURCE on Linux) before any libc header.
 */
#ifndef GG_COMPAT_H
#define GG_COMPAT_H

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#if !defined(GG_COMPAT_POSIX) && defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
#define GG_HAVE_SOCK_FLAGS 1 /* socket(2) takes SOCK_NONBLOCK | SOCK_CLOEXEC in its type */
#endif

#if defined(GG_HAVE_SOCK_FLAGS) &&                                                          \
    (defined(__linux__) || defined(__FreeBSD__) || defined(__DragonFly__) ||                \
     defined(__OpenBSD__) || defined(__NetBSD__))
#define GG_HAVE_ACCEPT4 1 /* accept4(2) with the same flags (NetBSD 7 has the flags, not it) */
#endif

#if !defined(GG_COMPAT_POSIX) && defined(MSG_NOSIGNAL)
#define GG_HAVE_MSG_NOSIGNAL 1       /* tested by name: glibc's MSG_NOSIGNAL names an enum */
#define GG_MSG_NOSIGNAL MSG_NOSIGNAL /* per-send: EPIPE, not SIGPIPE */
#else
#define GG_MSG_NOSIGNAL 0 /* per-socket instead: gg_nosigpipe() (SO_NOSIGPIPE) */
#endif

#if defined(GG_HAVE_MSG_NOSIGNAL) || defined(SO_NOSIGPIPE)
#define GG_SIGPIPE_SAFE 1 /* no send below can raise SIGPIPE */
#else
#define GG_SIGPIPE_SAFE 0 /* neither exists (-DGG_COMPAT_POSIX on Linux): SIGPIPE must be ignored */
#endif

/* Make fd non-blocking and close-on-exec.  0, or -1 with errno set. */
static inline int gg_nonblock_cloexec(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0) return -1;
    return 0;
}

/* Where sends cannot say MSG_NOSIGNAL, ask the socket for EPIPE instead of SIGPIPE once.
 * A no-op where GG_MSG_NOSIGNAL does the job (or where neither exists).  0, or -1 + errno. */
static inline int gg_nosigpipe(int fd) {
#if !defined(GG_HAVE_MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    int one = 1;
    return setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#else
    (void)fd;
    return 0;
#endif
}

/* accept(2) a connection that is non-blocking, close-on-exec and never raises SIGPIPE.
 * -1 with accept's errno on failure; a connection that cannot be set up (it died between the
 * two calls) is closed and reported as ECONNABORTED, which callers skip like accept's own. */
static inline int gg_accept(int lfd, struct sockaddr *addr, socklen_t *alen) {
#if defined(GG_HAVE_ACCEPT4)
    return accept4(lfd, addr, alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int fd = accept(lfd, addr, alen);
    if (fd < 0) return -1;
    if (gg_nonblock_cloexec(fd) < 0 || gg_nosigpipe(fd) < 0) {
        close(fd);
        errno = ECONNABORTED;
        return -1;
    }
    return fd;
#endif
}

/* socket(2) that is non-blocking, close-on-exec and never raises SIGPIPE.  -1 + errno. */
static inline int gg_socket(int domain, int type, int protocol) {
#if defined(GG_HAVE_SOCK_FLAGS)
    return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
#else
    int fd = socket(domain, type, protocol);
    if (fd < 0) return -1;
    if (gg_nonblock_cloexec(fd) < 0 || gg_nosigpipe(fd) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
#endif
}

/* send(2) / sendmsg(2) that fail with EPIPE instead of raising SIGPIPE (on a socket from
 * gg_accept / gg_socket, or one given to gg_nosigpipe, where MSG_NOSIGNAL does not exist). */
static inline ssize_t gg_send(int fd, const void *buf, size_t n) {
    return send(fd, buf, n, GG_MSG_NOSIGNAL);
}

static inline ssize_t gg_sendmsg(int fd, const struct msghdr *msg) {
    return sendmsg(fd, msg, GG_MSG_NOSIGNAL);
}

#endif /* GG_COMPAT_H */
