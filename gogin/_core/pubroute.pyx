"""The publisher fast path's decision: whether the core answers a publish itself.

The common publish (POST/PUT to a publisher location, from an allowed network, API key given,
``?id=`` in plain characters, a body within the limit) is answered by the core without a
call into Python.  Everything else goes to Python unchanged, so this module decides before
anything changes and answers with the bytes the Python location would write: the same checks
in the same order, its answer built by ``responses`` like every other.
"""

cimport cython
from cpython.object cimport PyTypeObject, Py_TYPE
from cpython.ref cimport PyObject
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport (
    PyUnicode_GET_LENGTH, PyUnicode_KIND, PyUnicode_DATA, PyUnicode_READ,
)

from gogin._core.frames cimport utf8_valid
from gogin._core.responses cimport head_start, finish_answer

from gogin._core.responses import NO_CACHE_HEADERS

# push-stream's Accept subtypes in the module's order (gogin/stats.py FORMATS): the first one a
# part after a '/' starts with wins; JSON when none does
SUBTYPES = ("plain", "json", "yaml", "xml", "x-json", "x-yaml")
ANSWERS = {"json": PUB_ANSWER_JSON, "x-json": PUB_ANSWER_X_JSON}
ANSWER_NAMES = ("empty", "json", "x-json")     # by PubAnswer value (check, answer_bytes)
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:~@/")

# The heads Connection.respond() writes for the Python publisher location's 200
# (gogin/locations/publisher.py), built once by the same function
cdef tuple STARTS = (
    head_start(200, NO_CACHE_HEADERS),
    head_start(200, (("Content-Type", "application/json"),) + NO_CACHE_HEADERS),
    head_start(200, (("Content-Type", "text/x-json"),) + NO_CACHE_HEADERS),
)


cdef inline bint _same_secret(bytes a, bytes b):
    # constant time in the length of b (hmac.compare_digest's promise for equal lengths)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(b)
    cdef const unsigned char *x = <const unsigned char *>PyBytes_AS_STRING(a)
    cdef const unsigned char *y = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef unsigned char d = 0
    if PyBytes_GET_SIZE(a) != n:
        return False
    for i in range(n):
        d |= x[i] ^ y[i]
    return d == 0


cdef str channel_id_error(str name, Py_ssize_t max_len, int *status):
    # One pass over the code points, then the reasons in the order the locations have always
    # given them (the first that applies wins).  In C because the publisher WebSocket checks
    # every id of every item: a set of ids already checked cost more than this (a hash and a
    # cold table per item).
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(name)
    cdef int kind = PyUnicode_KIND(name)
    cdef void *data = PyUnicode_DATA(name)
    cdef Py_UCS4 ch
    cdef bint star = False, control = False, slash = False, surrogate = False
    for i in range(n):
        ch = PyUnicode_READ(kind, data, i)
        if ch == 0x2A:
            star = True
        elif ch < 0x20 or ch == 0x7F:
            control = True
        elif ch == 0x2F:
            slash = True
        elif 0xD800 <= ch <= 0xDFFF:
            surrogate = True          # a lone surrogate escape ("\ud800" in JSON): not UTF-8
    status[0] = 400
    if n == 0:
        return "No channel id provided."
    if star or name == "ALL":
        status[0] = 403
        return "Channel id not authorized for this method."
    if n > max_len:
        return "Channel id is too large."
    if control:
        return "Channel id has control characters."
    # '/' separates ids in paths and ?id= lists, so an id holding one could never be named
    # alone; '.' and '..' are what a proxy in front normalizes away from a path
    if slash or name == "." or name == "..":
        return "Invalid channel id."
    if surrogate:
        return "Channel id is not valid UTF-8."
    return None


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    PyTypeObject PyMemberDescr_Type
    PyObject *_PyType_Lookup(PyTypeObject *t, PyObject *name)

cdef extern from "structmember.h":
    enum:
        T_OBJECT
        T_OBJECT_EX


cdef void member_offsets(type cls, tuple names, Py_ssize_t *offs):
    cdef Py_ssize_t i
    cdef PyObject *d
    cdef PyMemberDef *m
    for i in range(len(names)):
        offs[i] = -1
        # the class's own attribute, found along the MRO without running a descriptor
        d = _PyType_Lookup(<PyTypeObject *>cls, <PyObject *>names[i])
        if d == NULL or Py_TYPE(<object>d) != &PyMemberDescr_Type:
            continue
        m = (<PyMemberDescrObject *>d).d_member
        if m.type == T_OBJECT_EX or m.type == T_OBJECT:
            offs[i] = m.offset


def channel_id_problem(str name not None, Py_ssize_t max_len):
    """None when ``name`` is a channel id that may be named, else (status, reason)."""
    cdef int status = 0
    cdef str reason = channel_id_error(name, max_len, &status)
    return None if reason is None else (status, reason)


@cython.final
cdef class PublishRoute:
    """One publisher location the core answers itself in the common case (Hub.publish_route)."""

    def __init__(self, *, bint public=False, api_key=None, bint info=True, events_channel=None,
                 Py_ssize_t max_channel_id_length=1024, Py_ssize_t max_message_size=1 << 20,
                 bint cors=False):
        self.public = public
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.info = info
        self.events_channel = events_channel or None
        self.max_id_len = max_channel_id_length
        self.max_message_size = max_message_size
        self.cors = cors
        self.answered = 0

    cdef list decide(self, Request req, bint peer_allowed, dict channels, bint *binary,
                     int *answer):
        cdef str k, v, given = None, auth = None, ctype = None, accept = None, ids, name
        cdef str subtype
        cdef list names
        cdef bytes body
        cdef Py_ssize_t n
        cdef int status
        if req.method != "POST" and req.method != "PUT":
            return None
        if not self.public and not peer_allowed:
            return None
        for k, v in req.headers:
            if k == "x-api-key":
                if given is None:
                    given = v
            elif k == "authorization":
                if auth is None:
                    auth = v
            elif k == "content-type":
                if ctype is None:
                    ctype = v
            elif k == "accept":
                if accept is None:
                    accept = v
            elif k == "upgrade" or k == "sec-websocket-key" or k == "event-id" \
                    or k == "event-type":
                return None
            elif k == "connection":
                if "upgrade" in v.lower():
                    return None
            elif k == "origin":
                if self.cors:
                    return None
        if self.api_key is not None:
            if not given and auth is not None and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not _same_secret((given or "").encode("utf-8"), self.api_key):
                return None
        # the query: exactly id=<ids> in plain characters (no escapes: nothing to decode)
        ids = req.query
        if not ids.startswith("id=") or len(ids) == 3:
            return None
        ids = ids[3:]
        for k in ids:
            if k not in ID_CHARS:
                return None
        names = []
        for name in ids.split("/"):
            if not name or name in names:
                continue
            if channel_id_error(name, self.max_id_len, &status) is not None:
                return None          # Python answers it, with the reason
            names.append(name)
        if not names or (self.info and len(names) > 1):
            return None
        body = req.body
        n = PyBytes_GET_SIZE(body)
        if n == 0 or n > self.max_message_size:
            return None
        if self.events_channel is not None:
            for name in names:
                if name == self.events_channel or name not in channels:
                    return None
        answer[0] = PUB_ANSWER_EMPTY
        if self.info:
            answer[0] = PUB_ANSWER_JSON
            if accept:
                subtype = None
                for k in accept.split("/")[1:]:
                    for v in SUBTYPES:
                        if k.startswith(v):
                            subtype = v
                            break
                    if subtype is not None:
                        break
                if subtype is not None:
                    if subtype not in ANSWERS:
                        return None          # plain, yaml, xml: Python renders those
                    answer[0] = ANSWERS[subtype]
        if ctype is not None and ctype.split(";")[0].strip().lower() == \
                "application/octet-stream":
            binary[0] = True
        else:
            binary[0] = not utf8_valid(<const unsigned char *>PyBytes_AS_STRING(body), n)
        return names

    def check(self, Request req not None, bint peer_allowed=True, channels=None):
        """decide() from Python (tests): None, or (channels, binary, "empty" | "json" |
        "x-json")."""
        cdef bint binary = False
        cdef int answer = 0
        names = self.decide(req, peer_allowed, channels if channels is not None else {},
                            &binary, &answer)
        if names is None:
            return None
        return names, binary, ANSWER_NAMES[answer]


cdef bytes publish_answer(int answer, Channel ch, bint keep_alive):
    cdef bytes info
    if answer == PUB_ANSWER_EMPTY:
        return finish_answer(<bytes>STARTS[0], 0, keep_alive, NULL, 0)
    info = (b'{"channel": "%s", "published_messages": %d, "stored_messages": %d, '
            b'"subscribers": %d}\r\n' % (ch.name_json, ch.published, ch.hist.count,
                                        ch.subscribers))
    return finish_answer(<bytes>STARTS[answer], PyBytes_GET_SIZE(info), keep_alive,
                         <const unsigned char *>PyBytes_AS_STRING(info), PyBytes_GET_SIZE(info))


def answer_bytes(str answer, Channel ch not None, bint keep_alive=True):
    """publish_answer() from Python (tests)."""
    return publish_answer(ANSWER_NAMES.index(answer), ch, keep_alive)
