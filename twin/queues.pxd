# C types for twin/queues.py when it is compiled (Cython's "augmenting .pxd"): work items
# and sector queues become extension types with typed fields, so the compiled event
# core (twin/_core.py) reads and writes them as C struct members. The .py stays plain
# Python, and runs as such where nothing is compiled.

cdef class Item:
    cdef public Py_ssize_t id, cls, sector, qtoken
    cdef public double arrive, due, sector_arrive
    cdef public bint late
    cdef public int state  # an ItemState; no object fields: not tracked by the cyclic collector

cdef class SectorQueue:
    cdef public object _fifo
    cdef public list _edd
    cdef public Py_ssize_t _seq, n
