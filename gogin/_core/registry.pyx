"""Channel <-> subscriber registry.

Channels live in a dict (one lookup per publish); everything per subscriber is C: a Sub is a
malloc'd record linked from both sides, so subscribe, unsubscribe and unsubscribe-all on close
never scan a channel's subscribers.
"""

cimport cython

import time

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdlib cimport malloc, realloc, free

from gogin._core.history cimport chist_init
from gogin._core.formats cimport json_escape

cdef enum:
    FIRST_CAP = 4          # first array capacity: most channels and connections are small


cdef void sublist_init(SubList *lst) noexcept nogil:
    lst.items = NULL
    lst.n = 0
    lst.cap = 0


cdef int _grow(void ***items, Py_ssize_t *cap) noexcept nogil:
    cdef Py_ssize_t newcap = cap[0] * 2 if cap[0] else FIRST_CAP
    cdef void **p = <void **>realloc(items[0], newcap * sizeof(void *))
    if p == NULL:
        return -1
    items[0] = p
    cap[0] = newcap
    return 0


@cython.final
cdef class Channel:

    def __cinit__(self, str name):
        self.name = name
        self.name_utf8 = name.encode("utf-8")
        self.name_json = json_escape(self.name_utf8)
        self.groups = NULL
        self.ngroups = 0
        self.subscribers = 0
        self.published = 0
        self.last_id = 0
        self.epoch = 0
        self.last_time = 0
        self.last_tag = 0
        self.created = time.time()
        self.persistent = False
        self.data = None
        chist_init(&self.hist)

    def __dealloc__(self):
        cdef int i
        for i in range(self.ngroups):
            free(self.groups[i].subs)
        free(self.groups)

    cdef inline Group *group_of(self, int fmt):
        cdef int i
        for i in range(self.ngroups):
            if self.groups[i].fmt == fmt:
                return &self.groups[i]
        return NULL

    def __repr__(self):
        return f"<Channel {self.name!r} subscribers={self.subscribers} published={self.published}>"

    @property
    def stored(self):
        """Messages stored for this channel."""
        return self.hist.count

    @property
    def lost(self):
        """Messages evicted from this channel's storage (count, TTL or byte cap)."""
        return self.hist.lost


@cython.final
cdef class Registry:

    def __cinit__(self):
        self.channels = {}
        self.subscriptions = 0

    def __dealloc__(self):
        # Subs are owned by their connections' SubLists, which the hub clears before this.
        pass

    cdef Channel get_or_create(self, str name):
        cdef Channel ch = self.channels.get(name)
        if ch is None:
            ch = Channel(name)
            self.channels[name] = ch
        return ch

    cdef Sub *find(self, SubList *lst, str name) noexcept:
        cdef Py_ssize_t i
        for i in range(lst.n):
            if (<Channel>lst.items[i].channel).name == name:
                return lst.items[i]
        return NULL

    cdef Sub *subscribe(self, SubList *lst, void *conn, str name, int fmt) except? NULL:
        if self.find(lst, name) != NULL:
            return NULL
        cdef Channel ch = self.get_or_create(name)
        cdef Group *g = ch.group_of(fmt)
        cdef Group *groups
        if g == NULL:
            groups = <Group *>realloc(ch.groups, (ch.ngroups + 1) * sizeof(Group))
            if groups == NULL:
                raise MemoryError()
            ch.groups = groups
            g = &ch.groups[ch.ngroups]
            g.fmt = fmt
            g.batch = NULL
            g.subs = NULL
            g.n = 0
            g.cap = 0
            ch.ngroups += 1
        if g.n == g.cap and _grow(<void ***>&g.subs, &g.cap) < 0:
            raise MemoryError()
        if lst.n == lst.cap and _grow(<void ***>&lst.items, &lst.cap) < 0:
            raise MemoryError()
        cdef Sub *s = <Sub *>malloc(sizeof(Sub))
        if s == NULL:
            raise MemoryError()
        s.conn = conn
        s.channel = <void *>ch
        s.group = <int>(g - ch.groups)
        s.idx_chan = g.n
        s.idx_conn = lst.n
        g.subs[g.n] = s
        g.n += 1
        lst.items[lst.n] = s
        lst.n += 1
        ch.subscribers += 1
        self.subscriptions += 1
        return s

    cdef void unsubscribe(self, SubList *lst, Sub *s) noexcept:
        cdef Channel ch = <Channel>s.channel
        cdef Group *g = &ch.groups[s.group]
        cdef Sub *moved
        # swap-remove from the channel's group
        g.n -= 1
        if s.idx_chan != g.n:
            moved = g.subs[g.n]
            g.subs[s.idx_chan] = moved
            moved.idx_chan = s.idx_chan
        # swap-remove from the connection's list
        lst.n -= 1
        if s.idx_conn != lst.n:
            moved = lst.items[lst.n]
            lst.items[s.idx_conn] = moved
            moved.idx_conn = s.idx_conn
        ch.subscribers -= 1
        self.subscriptions -= 1
        free(s)
        self.drop_if_empty(ch)

    cdef void drop_if_empty(self, Channel ch) noexcept:
        # a channel with stored messages stays: its Stored records point into it
        if ch.subscribers == 0 and not ch.persistent and ch.hist.count == 0:
            self.channels.pop(ch.name, None)

    cdef void unsubscribe_all(self, SubList *lst) noexcept:
        while lst.n > 0:
            self.unsubscribe(lst, lst.items[lst.n - 1])
        free(lst.items)
        sublist_init(lst)

    # -- Python-visible surface, for tests and stats -------------------------------------------

    def channel(self, str name):
        return self.channels.get(name)

    def __len__(self):
        return len(self.channels)


@cython.final
cdef class _Member:
    """A stand-in connection for registry tests: owns a SubList, identified by an int."""
    cdef SubList subs
    cdef readonly object key

    def __cinit__(self, key):
        self.key = key
        sublist_init(&self.subs)


@cython.final
cdef class RegistryProbe:
    """Sans-I/O harness: drives a Registry with integer connection ids (tests, benchmarks)."""
    cdef readonly Registry registry
    cdef dict members

    def __cinit__(self):
        self.registry = Registry()
        self.members = {}

    def __dealloc__(self):
        cdef _Member m
        if self.members is not None:
            for m in self.members.values():
                self.registry.unsubscribe_all(&m.subs)

    cdef _Member _member(self, key):
        cdef _Member m = self.members.get(key)
        if m is None:
            m = _Member(key)
            self.members[key] = m
        return m

    def subscribe(self, key, str channel, int fmt=0):
        cdef _Member m = self._member(key)
        return self.registry.subscribe(&m.subs, <void *>m, channel, fmt) != NULL

    def unsubscribe(self, key, str channel):
        cdef _Member m = self.members.get(key)
        if m is None:
            return False
        cdef Sub *s = self.registry.find(&m.subs, channel)
        if s == NULL:
            return False
        self.registry.unsubscribe(&m.subs, s)
        return True

    def unsubscribe_all(self, key):
        cdef _Member m = self.members.pop(key, None)
        if m is None:
            return 0
        cdef Py_ssize_t n = m.subs.n
        self.registry.unsubscribe_all(&m.subs)
        return n

    def subscribers(self, str channel):
        """Keys of the subscribers of `channel`, by walking the C arrays."""
        cdef Channel ch = self.registry.channels.get(channel)
        cdef int gi
        cdef Py_ssize_t i
        out = []
        if ch is None:
            return out
        for gi in range(ch.ngroups):
            for i in range(ch.groups[gi].n):
                out.append((<_Member>ch.groups[gi].subs[i].conn).key)
        return out

    def channels_of(self, key):
        cdef _Member m = self.members.get(key)
        cdef Py_ssize_t i
        if m is None:
            return []
        return [(<Channel>m.subs.items[i].channel).name for i in range(m.subs.n)]

    def check(self):
        """Verify both directions agree (every index points back at its Sub)."""
        cdef Channel ch
        cdef _Member m
        cdef int gi
        cdef Py_ssize_t i, total = 0
        for ch in self.registry.channels.values():
            for gi in range(ch.ngroups):
                for i in range(ch.groups[gi].n):
                    s = ch.groups[gi].subs[i]
                    assert s.idx_chan == i and s.group == gi and s.channel == <void *>ch
                    m = <_Member>s.conn
                    assert m.subs.items[s.idx_conn] == s
                    total += 1
        assert total == self.registry.subscriptions
        return total
