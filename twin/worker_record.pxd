# C fields of twin/worker_record.py when it is compiled (Cython's "augmenting .pxd"): the
# compiled event core (twin/_core.py) reads and writes a worker's hot fields as C struct
# members. The .py stays plain Python (slots), and runs as such where nothing is compiled.

cdef class WorkerRecord:
    cdef public Py_ssize_t home, shift, sector, token
    cdef public bint flex
    cdef public double since, ready, overtime_used
    cdef public object state, item
