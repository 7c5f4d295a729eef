# C types for the compiled event core (twin/_core.py, Cython's "augmenting .pxd").
# The .py stays plain Python; Cython reads these declarations when it compiles it.
import cython
from twin._core_heap cimport EventHeap
from twin.queues cimport Item, SectorQueue
from twin.worker_record cimport WorkerRecord

cdef double INF
cdef double _EPS
cdef int QUEUED, IN_SERVICE, DONE
cdef object IDLE, BUSY, OVERTIME, OFF

cdef class State:
    cdef public object m
    cdef public EventHeap heap
    cdef public list count, acc_loc, acc_flex, acc_home, idle, queues, priority, stations
    cdef public list down, outage, service, eff, processed, sector_time_sum, misses
    cdef public list sector_arrived, tick_in, tick_out, overtime_ok, routes
    cdef public object rng_routing, item_classes, log
    cdef public dict sector_index
    cdef public double flex_eff, max_overtime

cpdef void run_until(object m, double stop) except *

@cython.locals(tick=double, end=double, decay=double, gain=double, s=Py_ssize_t,
               arrival_rate=list, completion_rate=list, tick_in=list, tick_out=list, st=State)
cpdef void step(object m) except *

@cython.locals(heap=EventHeap, times=list, i=Py_ssize_t, t_arr=double, t_evt=double, t=double,
               kind=int, st=State)
cpdef void advance(object m, double end) except *

cdef void due(State st, Item item) except *

@cython.locals(s=Py_ssize_t, heap=EventHeap, item=Item)
cdef void arrive(State st, object cls, double t) except *

cdef void enter(State st, Item item, Py_ssize_t s, double t) except *

@cython.locals(token=Py_ssize_t, seq=Py_ssize_t)
cdef void queue_push(SectorQueue q, Item item) except *

@cython.locals(item=Item)
cdef Item queue_pop(SectorQueue q, object priority)

@cython.locals(c=list)
cdef bint stations_free(State st, Py_ssize_t s) except -1

cpdef void dispatch(object m, Py_ssize_t s, double t) except *

@cython.locals(q=SectorQueue)
cdef void dispatch_st(State st, Py_ssize_t s, double t) except *

@cython.locals(heap=EventHeap, s=Py_ssize_t, i=Py_ssize_t, buf=list, x=double, eff=double, duration=double)
cdef void start(State st, WorkerRecord w, Item item, double t, object state) except *

@cython.locals(s=Py_ssize_t, nxt=Py_ssize_t, used=double, limit=double, item=Item, q=SectorQueue)
cdef void complete(State st, WorkerRecord w, double t) except *

@cython.locals(u=double, k=Py_ssize_t, cum=list, targets=list)
cdef Py_ssize_t next_sector(State st, object cls, Py_ssize_t s) except? -2

@cython.locals(d=double, old_s=Py_ssize_t)
cdef void move(State st, WorkerRecord w, object state, Py_ssize_t sector, double t) except *
