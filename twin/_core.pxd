# C types for the compiled event core (twin/_core.py, Cython's "augmenting .pxd").
# The .py stays plain Python; Cython reads these declarations when it compiles it.
import cython
from twin._core_heap cimport EventHeap
from twin.queues cimport Item, SectorQueue

cdef double INF
cdef double _EPS
cdef int QUEUED, IN_SERVICE, DONE
cdef object IDLE, BUSY, OVERTIME, OFF

cpdef void run_until(object m, double stop) except *

@cython.locals(tick=double, end=double, decay=double, gain=double, s=Py_ssize_t,
               arrival_rate=list, completion_rate=list, tick_in=list, tick_out=list)
cpdef void step(object m) except *

@cython.locals(heap=EventHeap, times=list, i=Py_ssize_t, t_arr=double, t_evt=double, t=double,
               kind=int)
cpdef void advance(object m, double end) except *

cdef void due(object m, Item item) except *

@cython.locals(s=Py_ssize_t, heap=EventHeap, item=Item)
cdef void arrive(object m, object cls, double t) except *

cdef void enter(object m, Item item, Py_ssize_t s, double t) except *

@cython.locals(token=Py_ssize_t, seq=Py_ssize_t)
cdef void queue_push(SectorQueue q, Item item) except *

@cython.locals(item=Item)
cdef Item queue_pop(SectorQueue q, object priority)

@cython.locals(c=list)
cdef bint stations_free(object m, Py_ssize_t s) except -1

@cython.locals(q=SectorQueue)
cpdef void dispatch(object m, Py_ssize_t s, double t) except *

@cython.locals(heap=EventHeap, s=Py_ssize_t, i=Py_ssize_t, buf=list, x=double, eff=double, duration=double)
cdef void start(object m, object w, Item item, double t, object state) except *

@cython.locals(s=Py_ssize_t, nxt=Py_ssize_t, used=double, limit=double, item=Item, q=SectorQueue)
cdef void complete(object m, object w, double t) except *

@cython.locals(u=double, k=Py_ssize_t, cum=list, targets=list)
cdef Py_ssize_t next_sector(object m, object cls, Py_ssize_t s) except? -2

@cython.locals(d=double, old_s=Py_ssize_t)
cdef void move(object m, object w, object state, Py_ssize_t sector, double t) except *
