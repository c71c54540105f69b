/* A reference pub/sub server in C for gogin-bench (the "c-server" peer, gogin/bench/peers.py):
 * what a plain C server does for the same work, to compare gogin's routing against.
 *
 * One thread, epoll (level-triggered), non-blocking sockets, one send() per delivery (no
 * corking), a queue only when a send is partial.  Surface, as the other peers:
 *   GET  /sub/<ch>   WebSocket subscriber: every published message as one Text frame
 *   GET  /pub/<ch>   WebSocket publisher of one channel (each message is published)
 *   GET  /pub[/]     multi-channel JSON publisher WebSocket: {"id": ch|[ch..], "text": s} or
 *                    an array of them, published in order (invalid input: {"error", "index"})
 *   POST /pub/<ch>   HTTP/1.1 keep-alive (pipelined) publish; answers 200, Content-Length 0
 * Build: cc -O2 -o c_server c_server.c -lcrypto      Run: c_server PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536          /* fd table size */
#define RBUF 65536           /* bytes read per recv */
#define NBUCKETS 65536       /* channel hash buckets */

enum { K_HTTP, K_SUB, K_PUB, K_PUBJSON };

typedef struct Chan {
    char *name;
    int *subs, nsubs, cap;
    struct Chan *next;
} Chan;

typedef struct {
    int used, kind;
    Chan *chan;                   /* K_SUB: its channel; K_PUB: the channel it publishes to */
    char *in; size_t inlen, incap;
    char *out; size_t outlen, outcap;
} Conn;

static Conn conns[MAXFD];
static Chan *buckets[NBUCKETS];
static int ep;

static uint32_t hash(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static Chan *chan_get(const char *name, size_t n, int create) {
    uint32_t b = hash(name, n) & (NBUCKETS - 1);
    for (Chan *c = buckets[b]; c; c = c->next)
        if (strlen(c->name) == n && memcmp(c->name, name, n) == 0) return c;
    if (!create) return NULL;
    Chan *c = calloc(1, sizeof(Chan));
    c->name = strndup(name, n);
    c->next = buckets[b];
    buckets[b] = c;
    return c;
}

static void append(char **buf, size_t *len, size_t *cap, const char *d, size_t n) {
    if (*len + n > *cap) {
        *cap = (*len + n) * 2;
        *buf = realloc(*buf, *cap);
    }
    memcpy(*buf + *len, d, n);
    *len += n;
}

static void close_conn(int fd);

/* one send; a partial one queues the rest and arms EPOLLOUT */
static void send_bytes(int fd, const char *d, size_t n) {
    Conn *c = &conns[fd];
    if (c->outlen == 0) {
        ssize_t w = send(fd, d, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) { close_conn(fd); return; }
            w = 0;
        }
        if ((size_t)w == n) return;
        d += w; n -= w;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    }
    append(&c->out, &c->outlen, &c->outcap, d, n);
}

static void flush_out(int fd) {
    Conn *c = &conns[fd];
    ssize_t w = send(fd, c->out, c->outlen, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) close_conn(fd);
        return;
    }
    memmove(c->out, c->out + w, c->outlen - w);
    c->outlen -= w;
    if (c->outlen == 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    }
}

static size_t ws_header(char *h, int opcode, size_t n) {
    h[0] = (char)(0x80 | opcode);
    if (n < 126) { h[1] = (char)n; return 2; }
    if (n < 65536) { h[1] = 126; h[2] = (char)(n >> 8); h[3] = (char)n; return 4; }
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (char)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

static void ws_send(int fd, int opcode, const char *d, size_t n) {
    char frame[10 + 4096];
    size_t hl = ws_header(frame, opcode, n);
    if (n <= 4096) {                      /* header and payload in one send */
        memcpy(frame + hl, d, n);
        send_bytes(fd, frame, hl + n);
    } else {
        char *big = malloc(hl + n);
        memcpy(big, frame, hl);
        memcpy(big + hl, d, n);
        send_bytes(fd, big, hl + n);
        free(big);
    }
}

static void publish(Chan *ch, const char *d, size_t n) {
    if (!ch) return;
    for (int i = 0; i < ch->nsubs; i++) ws_send(ch->subs[i], 1, d, n);   /* one send each */
}

static void unsubscribe(int fd) {
    Chan *ch = conns[fd].chan;
    if (!ch || conns[fd].kind != K_SUB) return;
    for (int i = 0; i < ch->nsubs; i++)
        if (ch->subs[i] == fd) { ch->subs[i] = ch->subs[--ch->nsubs]; break; }
}

static void close_conn(int fd) {
    Conn *c = &conns[fd];
    if (!c->used) return;
    unsubscribe(fd);
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(c->in); free(c->out);
    memset(c, 0, sizeof(Conn));
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void accept_key(const char *key, size_t n, char out[29]) {
    char buf[256];
    unsigned char sha[20];
    if (n > 200) n = 200;
    memcpy(buf, key, n);
    memcpy(buf + n, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    SHA1((unsigned char *)buf, n + 36, sha);
    int o = 0;
    for (int i = 0; i < 21; i += 3) {
        uint32_t v = sha[i] << 16 | (i + 1 < 20 ? sha[i + 1] << 8 : 0) | (i + 2 < 20 ? sha[i + 2] : 0);
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < 20 ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < 20 ? B64[v & 63] : '=';
    }
    out[28] = 0;
}

/* a header's value in head[0:n] (name lower-case, with the colon), or NULL */
static const char *header(const char *head, size_t n, const char *name, size_t *vlen) {
    size_t nl = strlen(name);
    for (const char *p = head; p < head + n; ) {
        const char *e = memmem(p, head + n - p, "\r\n", 2);
        if (!e) break;
        if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl;
            while (*v == ' ') v++;
            *vlen = e - v;
            return v;
        }
        p = e + 2;
    }
    return NULL;
}

/* minimal JSON for the publisher: a string at *p (escapes decoded into out) */
static int json_string(const char **p, const char *end, char *out, size_t *olen, size_t cap) {
    const char *s = *p;
    size_t o = 0;
    int bad = 0;                          /* a lone surrogate: not text (reported at the end) */
    if (s >= end || *s != '"') return -1;
    for (s++; s < end && *s != '"'; s++) {
        char ch = *s;
        if (ch == '\\') {
            if (++s >= end) return -1;
            switch (*s) {
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            case 'r': ch = '\r'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'u': {
                if (end - s < 5) return -1;
                unsigned v = (unsigned)strtoul((char[5]){s[1], s[2], s[3], s[4], 0}, NULL, 16);
                s += 4;
                if (o + 4 >= cap) return -1;
                if (v >= 0xD800 && v < 0xE000) {        /* a surrogate: only a pair is text */
                    unsigned lo = 0;
                    if (v < 0xDC00 && end - s >= 7 && s[1] == '\\' && s[2] == 'u')
                        lo = (unsigned)strtoul((char[5]){s[3], s[4], s[5], s[6], 0}, NULL, 16);
                    if (lo < 0xDC00 || lo >= 0xE000) { bad = 1; continue; }
                    s += 6;
                    v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
                    out[o++] = (char)(0xF0 | v >> 18); out[o++] = (char)(0x80 | (v >> 12 & 63));
                    out[o++] = (char)(0x80 | (v >> 6 & 63)); out[o++] = (char)(0x80 | (v & 63));
                    continue;
                }
                if (v < 0x80) out[o++] = (char)v;
                else if (v < 0x800) { out[o++] = (char)(0xC0 | v >> 6); out[o++] = (char)(0x80 | (v & 63)); }
                else { out[o++] = (char)(0xE0 | v >> 12); out[o++] = (char)(0x80 | (v >> 6 & 63));
                       out[o++] = (char)(0x80 | (v & 63)); }
                continue;
            }
            default: ch = *s;
            }
        }
        if (o >= cap) return -1;
        out[o++] = ch;
    }
    if (s >= end) return -1;
    *p = s + 1;
    *olen = o;
    return bad ? -2 : 0;
}

static void skip_ws(const char **p, const char *end) {
    while (*p < end && (**p == ' ' || **p == '\n' || **p == '\r' || **p == '\t')) (*p)++;
}

static void json_error(int fd, const char *err, int index) {
    char buf[256];
    int n = snprintf(buf, sizeof buf, "{\"error\": \"%s\", \"index\": %d}", err, index);
    ws_send(fd, 1, buf, n);
}

/* one object {"id": ..., "text": ...}; other keys skipped if they are strings */
static int json_item(int fd, const char **p, const char *end, int index) {
    static char key[64], text[1 << 20], ids[64][256];
    size_t kl, tl = 0, il[64];
    int nids = 0, has_text = 0, unicode_err = 0;
    skip_ws(p, end);
    if (*p >= end || **p != '{') { json_error(fd, "each message is a JSON object", index); return -1; }
    (*p)++;
    for (;;) {
        skip_ws(p, end);
        if (*p < end && **p == '}') { (*p)++; break; }
        if (json_string(p, end, key, &kl, sizeof key) < 0) goto bad;
        skip_ws(p, end);
        if (*p >= end || **p != ':') goto bad;
        (*p)++;
        skip_ws(p, end);
        if (kl == 2 && memcmp(key, "id", 2) == 0) {
            if (**p == '[') {
                (*p)++;
                for (;;) {
                    skip_ws(p, end);
                    if (*p < end && **p == ']') { (*p)++; break; }
                    if (nids == 64 || json_string(p, end, ids[nids], &il[nids], 256) < 0) goto bad;
                    nids++;
                    skip_ws(p, end);
                    if (*p < end && **p == ',') (*p)++;
                }
            } else {
                if (json_string(p, end, ids[0], &il[0], 256) < 0) goto bad;
                nids = 1;
            }
        } else if (kl == 4 && memcmp(key, "text", 4) == 0) {
            int r = json_string(p, end, text, &tl, sizeof text);
            if (r == -2) unicode_err = 1;
            else if (r < 0) goto bad;
            has_text = 1;
        } else {
            if (json_string(p, end, text, &tl, sizeof text) < 0) goto bad;
            tl = 0;
        }
        skip_ws(p, end);
        if (*p < end && **p == ',') (*p)++;
    }
    if (!nids) { json_error(fd, "id must be a channel id or a list of them", index); return 0; }
    if (!has_text || !tl) { json_error(fd, "text must be a non-empty string", index); return 0; }
    if (unicode_err) { json_error(fd, "text is not valid Unicode", index); return 0; }
    for (int i = 0; i < nids; i++) publish(chan_get(ids[i], il[i], 0), text, tl);
    return 0;
bad:
    json_error(fd, "message is not JSON", index);
    return -1;
}

static void json_message(int fd, const char *d, size_t n) {
    const char *p = d, *end = d + n;
    skip_ws(&p, end);
    if (p < end && *p == '[') {
        p++;
        for (int i = 0;; i++) {
            skip_ws(&p, end);
            if (p < end && *p == ']') return;
            if (json_item(fd, &p, end, i) < 0) return;
            skip_ws(&p, end);
            if (p < end && *p == ',') p++;
        }
    }
    json_item(fd, &p, end, 0);
}

static void on_ws_message(int fd, const char *d, size_t n) {
    Conn *c = &conns[fd];
    if (c->kind == K_PUB) publish(c->chan, d, n);
    else if (c->kind == K_PUBJSON) json_message(fd, d, n);
}

/* frames in c->in; returns bytes used */
static size_t feed_ws(int fd) {
    Conn *c = &conns[fd];
    size_t used = 0;
    while (c->used && c->inlen - used >= 2) {
        unsigned char *f = (unsigned char *)c->in + used;
        size_t avail = c->inlen - used, hl = 2, n = f[1] & 127;
        int op = f[0] & 15, masked = f[1] & 128;
        if (n == 126) { if (avail < 4) break; n = (size_t)f[2] << 8 | f[3]; hl = 4; }
        else if (n == 127) { if (avail < 10) break; n = 0; for (int i = 0; i < 8; i++) n = n << 8 | f[2 + i]; hl = 10; }
        if (masked) hl += 4;
        if (avail < hl + n) break;
        unsigned char *pl = f + hl;
        if (masked) for (size_t i = 0; i < n; i++) pl[i] ^= f[hl - 4 + (i & 3)];
        used += hl + n;
        if (op == 8) { ws_send(fd, 8, (char *)pl, n < 2 ? n : 2); close_conn(fd); return used; }
        if (op == 9) ws_send(fd, 10, (char *)pl, n);
        else if (op == 1 || op == 2) on_ws_message(fd, (char *)pl, n);
    }
    return used;
}

static const char OK[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
static const char NOTFOUND[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/* requests in c->in; returns bytes used */
static size_t feed_http(int fd) {
    Conn *c = &conns[fd];
    size_t used = 0;
    while (c->used && c->kind == K_HTTP) {
        char *head = c->in + used;
        size_t avail = c->inlen - used, vl = 0, clen = 0;
        char *e = memmem(head, avail, "\r\n\r\n", 4);
        if (!e) break;
        size_t hlen = e + 4 - head;
        const char *v = header(head, hlen, "content-length:", &vl);
        if (v) clen = strtoul(v, NULL, 10);
        if (avail < hlen + clen) break;
        char *sp = memchr(head, ' ', hlen), *sp2 = sp ? memchr(sp + 1, ' ', hlen - (sp + 1 - head)) : NULL;
        if (!sp || !sp2) { close_conn(fd); return used; }
        char *path = sp + 1;
        size_t plen = sp2 - path;
        used += hlen + clen;
        const char *key = header(head, hlen, "sec-websocket-key:", &vl);
        if (key && strncmp(head, "GET ", 4) == 0) {
            char acc[29];
            char resp[256];
            accept_key(key, vl, acc);
            if (plen > 5 && memcmp(path, "/sub/", 5) == 0) {
                c->kind = K_SUB;
                c->chan = chan_get(path + 5, plen - 5, 1);
                Chan *ch = c->chan;
                if (ch->nsubs == ch->cap) { ch->cap = ch->cap ? ch->cap * 2 : 4; ch->subs = realloc(ch->subs, ch->cap * sizeof(int)); }
                ch->subs[ch->nsubs++] = fd;
            } else if (plen > 5 && memcmp(path, "/pub/", 5) == 0) {
                c->kind = K_PUB;
                c->chan = chan_get(path + 5, plen - 5, 1);
            } else if ((plen == 4 || plen == 5) && memcmp(path, "/pub/", plen) == 0) {
                c->kind = K_PUBJSON;
            } else { send_bytes(fd, NOTFOUND, sizeof NOTFOUND - 1); close_conn(fd); return used; }
            int n = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
            send_bytes(fd, resp, n);
            break;
        }
        if (strncmp(head, "POST ", 5) == 0 && plen > 5 && memcmp(path, "/pub/", 5) == 0) {
            publish(chan_get(path + 5, plen - 5, 0), e + 4, clen);
            send_bytes(fd, OK, sizeof OK - 1);
            continue;
        }
        send_bytes(fd, NOTFOUND, sizeof NOTFOUND - 1);
        close_conn(fd);
        return used;
    }
    return used;
}

static void on_readable(int fd, char *rbuf) {
    ssize_t n = recv(fd, rbuf, RBUF, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) { close_conn(fd); return; }
    if (n < 0) return;
    Conn *c = &conns[fd];
    append(&c->in, &c->inlen, &c->incap, rbuf, n);
    size_t used = 0;
    if (c->kind == K_HTTP) used = feed_http(fd);
    if (c->used && c->kind != K_HTTP) {      /* frames (also those right behind a handshake) */
        memmove(c->in, c->in + used, c->inlen - used);
        c->inlen -= used;
        used = feed_ws(fd);
    }
    if (!c->used) return;
    memmove(c->in, c->in + used, c->inlen - used);
    c->inlen -= used;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 9090, one = 1;
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 4096) < 0) { perror("listen"); return 1; }
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[1024];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    char *rbuf = malloc(RBUF);
    fprintf(stderr, "c_server listening on 127.0.0.1:%d\n", port);
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (cfd >= MAXFD) { close(cfd); continue; }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conns[cfd].used = 1;
                    conns[cfd].kind = K_HTTP;
                    struct epoll_event e2 = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &e2);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT && conns[fd].used) flush_out(fd);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) && conns[fd].used) on_readable(fd, rbuf);
        }
    }
}
