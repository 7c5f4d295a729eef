# cython: language_level=3, boundscheck=False, wraparound=False
"""The compiled core's event heap: the twin's pending events, ordered in C.

The reference core keeps its events in a list of tuples ``(time, priority, sequence,
kind, a, b)`` ordered by :mod:`heapq`; every comparison there compares Python tuples.
This heap orders the same keys ``(time, priority, sequence)`` as C values, and keeps
each event's ``kind`` as a C int and its two payload fields in a Python list indexed by
a slot. Sequence numbers are unique, so both heaps pop the same events in the same
order. It pickles and deep-copies (a model's envs are pickled) as its list of entries.
"""

from cpython.mem cimport PyMem_Free, PyMem_Realloc

cdef double INF = float("inf")


cdef inline bint _less(Entry* x, Entry* y) noexcept nogil:
    if x.time != y.time:
        return x.time < y.time
    if x.prio != y.prio:
        return x.prio < y.prio
    return x.seq < y.seq


def _rebuild(list entries, long long seq):
    """Unpickle an :class:`EventHeap` from its entries (see ``__reduce__``)."""
    cdef EventHeap h = EventHeap()
    cdef tuple e
    for e in entries:
        h._push_seq(e[0], e[1], e[2], e[3], e[4], e[5])
    h.seq = seq
    return h


cdef class EventHeap:
    """Pending events by ``(time, priority, sequence)``; the earliest pops first."""

    def __cinit__(self):
        self.heap = NULL
        self.n = 0
        self.cap = 0
        self.seq = 0
        self.a = []
        self.b = []
        self.free = []

    def __dealloc__(self):
        PyMem_Free(self.heap)

    def __len__(self):
        return self.n

    def __reduce__(self):
        return _rebuild, (self.entries(), self.seq)

    def entries(self):
        """The pending events as ``(time, priority, sequence, kind, a, b)``, in heap order."""
        cdef Py_ssize_t i
        cdef Entry* e
        out = []
        for i in range(self.n):
            e = &self.heap[i]
            out.append((e.time, e.prio, e.seq, e.kind, self.a[e.slot], self.b[e.slot]))
        return out

    cpdef void push(self, double time, int prio, int kind, object a, object b) except *:
        """Schedule an event; it takes the next sequence number."""
        self._push_seq(time, prio, self.seq, kind, a, b)
        self.seq += 1

    cdef void _push_seq(
        self, double time, int prio, long long seq, int kind, object a, object b
    ) except *:
        cdef Py_ssize_t slot, i, parent
        cdef Entry e
        cdef Entry* grown
        if self.n == self.cap:
            self.cap = 64 if self.cap == 0 else 2 * self.cap
            grown = <Entry*> PyMem_Realloc(self.heap, self.cap * sizeof(Entry))
            if grown == NULL:
                raise MemoryError()
            self.heap = grown
        if self.free:
            slot = self.free.pop()
            self.a[slot] = a
            self.b[slot] = b
        else:
            slot = len(self.a)
            self.a.append(a)
            self.b.append(b)
        e.time = time
        e.prio = prio
        e.seq = seq
        e.kind = kind
        e.slot = slot
        i = self.n
        self.n += 1
        while i > 0:
            parent = (i - 1) >> 1
            if _less(&e, &self.heap[parent]):
                self.heap[i] = self.heap[parent]
                i = parent
            else:
                break
        self.heap[i] = e

    cpdef double peek_time(self):
        """Time of the earliest event (infinity if none)."""
        return self.heap[0].time if self.n else INF

    cpdef double pop(self) except? -1.0:
        """Remove the earliest event; return its time, leave it in ``kind``, ``pa``, ``pb``."""
        cdef Entry top, last
        cdef Py_ssize_t i, child, n
        if self.n == 0:
            raise IndexError("pop from an empty event heap")
        top = self.heap[0]
        self.n -= 1
        n = self.n
        if n:
            last = self.heap[n]
            i = 0
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and _less(&self.heap[child + 1], &self.heap[child]):
                    child += 1
                if _less(&self.heap[child], &last):
                    self.heap[i] = self.heap[child]
                    i = child
                else:
                    break
            self.heap[i] = last
        self.kind = top.kind
        self.pa = self.a[top.slot]
        self.pb = self.b[top.slot]
        self.a[top.slot] = None
        self.b[top.slot] = None
        self.free.append(top.slot)
        return top.time
