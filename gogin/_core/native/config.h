/* Platform feature detection for the selector backends (redis ae "config.h" pattern).
 *
 * GG_HAVE_EPOLL / GG_HAVE_KQUEUE say which mechanisms this platform has; poll(2) is POSIX and
 * always compiled.  GG_USE_EPOLL / GG_USE_KQUEUE / GG_USE_POLL (setup.py sets one from the
 * GOGIN_SELECTOR env var) only choose the *default* backend: every backend compiled in stays
 * reachable by name so the contract tests run on each of them.
 */
#ifndef GG_CONFIG_H
#define GG_CONFIG_H

#if defined(__linux__)
#define GG_HAVE_EPOLL 1 /* epoll(7): Linux 2.6+ */
#endif

#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#define GG_HAVE_KQUEUE 1 /* kqueue(2): macOS and the BSDs */
#endif

/* Default backend name: an explicit GG_USE_* wins, then the best mechanism available. */
#if defined(GG_USE_EPOLL)
#  ifndef GG_HAVE_EPOLL
#    error "GOGIN_SELECTOR=epoll but epoll is not available on this platform"
#  endif
#  define GG_DEFAULT_SELECTOR "epoll"
#elif defined(GG_USE_KQUEUE)
#  ifndef GG_HAVE_KQUEUE
#    error "GOGIN_SELECTOR=kqueue but kqueue is not available on this platform"
#  endif
#  define GG_DEFAULT_SELECTOR "kqueue"
#elif defined(GG_USE_POLL)
#  define GG_DEFAULT_SELECTOR "poll"
#elif defined(GG_HAVE_EPOLL)
#  define GG_DEFAULT_SELECTOR "epoll"
#elif defined(GG_HAVE_KQUEUE)
#  define GG_DEFAULT_SELECTOR "kqueue"
#else
#  define GG_DEFAULT_SELECTOR "poll"
#endif

#endif /* GG_CONFIG_H */
