# extern-only declarations of native/compat.h: the socket calls whose spelling differs between
# platforms (accept4, SOCK_NONBLOCK/SOCK_CLOEXEC, MSG_NOSIGNAL); use these, never the raw ones

from gogin._core.includes.sockets cimport sockaddr, socklen_t, msghdr, ssize_t

cdef extern from "compat.h" nogil:
    enum:
        GG_MSG_NOSIGNAL    # MSG_NOSIGNAL, or 0 where each socket carries SO_NOSIGPIPE instead
        GG_SIGPIPE_SAFE    # 1: no gg_send / gg_sendmsg raises SIGPIPE (0: only if it is ignored)
    # fcntl: O_NONBLOCK and FD_CLOEXEC on an existing fd (0, or -1 + errno)
    int gg_nonblock_cloexec(int fd)
    # SO_NOSIGPIPE where sends cannot say MSG_NOSIGNAL; a no-op elsewhere (0, or -1 + errno)
    int gg_nosigpipe(int fd)
    # accept4(fd, addr, alen, SOCK_NONBLOCK | SOCK_CLOEXEC) or accept + fcntl + SO_NOSIGPIPE
    int gg_accept(int lfd, sockaddr *addr, socklen_t *alen)
    # socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol) or its portable spelling
    int gg_socket(int domain, int type, int protocol)
    # send / sendmsg with GG_MSG_NOSIGNAL: EPIPE, never SIGPIPE
    ssize_t gg_send(int fd, const void *buf, size_t n)
    ssize_t gg_sendmsg(int fd, const msghdr *msg)
