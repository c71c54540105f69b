# extern-only declarations of the BSD socket calls the hub and the fanout use; the calls and
# flags that differ between platforms (accept4, SOCK_NONBLOCK, SOCK_CLOEXEC, MSG_NOSIGNAL) are
# in compat.pxd (native/compat.h) instead

from posix.uio cimport iovec

cdef extern from "<sys/types.h>" nogil:
    ctypedef long ssize_t

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    enum:
        MSG_DONTWAIT
        SHUT_WR
        SHUT_RDWR
        SOL_SOCKET
        SO_ERROR
        AF_INET
        AF_INET6
        AF_UNIX
    # to a peer that may reset: pass compat's GG_MSG_NOSIGNAL, or call gg_send / gg_sendmsg
    ssize_t sendmsg(int fd, const msghdr *msg, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    int shutdown(int fd, int how)

cdef extern from "<netinet/in.h>" nogil:
    enum:
        IPPROTO_TCP
    struct in_addr:
        unsigned int s_addr
    struct in6_addr:
        unsigned char s6_addr[16]
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short ntohs(unsigned short)

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)
    enum:
        INET6_ADDRSTRLEN

cdef extern from "<sys/socket.h>" nogil:
    int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen)

cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN
        EWOULDBLOCK
        EINTR
        EMFILE
        ENFILE
        ECONNABORTED
        ENOBUFS
        ENOMEM
        EPIPE
        ECONNRESET

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    enum:
        CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec *ts)
    time_t time(time_t *t)
    struct tm:
        pass
    tm *gmtime_r(const time_t *t, tm *out)
    size_t strftime(char *s, size_t max, const char *fmt, const tm *t)

cdef extern from *:
    """
    #include <errno.h>
    /* EAGAIN and EWOULDBLOCK are equal on Linux and differ elsewhere: one test for both */
    static inline int gg_would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }
    """
    int gg_would_block(int e) nogil
