# Declarations of the compiled event heap (twin/_core_heap.pyx), for twin/_core.py.

cdef struct Entry:
    double time
    int prio
    long long seq
    int kind
    Py_ssize_t slot

cdef class EventHeap:
    cdef Entry* heap
    cdef readonly Py_ssize_t n
    cdef Py_ssize_t cap
    cdef readonly long long seq
    cdef list a, b, free
    cdef readonly int kind
    cdef readonly object pa, pb

    cpdef void push(self, double time, int prio, int kind, object a, object b) except *
    cdef void _push_seq(self, double time, int prio, long long seq, int kind, object a,
                        object b) except *
    cpdef double peek_time(self)
    cpdef double pop(self) except? -1.0
