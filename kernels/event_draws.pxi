# An invalidation schedule's random draws (mshare_hw.workload.events) in C. Each event makes the same calls
# into numpy's own C distributions, in the same order, as Generator.exponential(mean_gap) (rate schedules
# only), Generator.random() and three Generator.integers(high) do in Python (a bounded draw on the closed
# interval [0, high - 1], Lemire's method, not masked): the same numbers from the same seed, without
# numpy's per-call argument handling (~3 us per integers() call).

from cpython.pycapsule cimport PyCapsule_GetPointer
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_bounded_uint64, random_exponential, random_standard_uniform


cdef class EventDraws:
    """Iterator of events: for each time (from `times`, or Poisson arrivals `mean_gap` cycles apart on
    average when `times` is None), kind by weight (`cumulative`: the normalised cumulative weights of
    `names`), size uniformly from `pages`, first page uniform over the pages where that size fits in the
    region, initiator uniform from `initiators`. Yields event_type(time, kind, proc, region, first, n);
    event_type is a tuple subclass with those fields (shootdown.Event, a NamedTuple), built here without
    calling its Python-level __new__."""

    cdef object bit_generator  # keeps the state `bitgen` points into alive
    cdef object lock
    cdef bitgen_t* bitgen
    cdef object event_type
    cdef tuple names
    cdef object region
    cdef object times
    cdef double mean_gap
    cdef double t
    cdef double[::1] cumulative
    cdef int64_t[::1] pages
    cdef int64_t[::1] initiators
    cdef int64_t region_pages

    def __init__(self, rng, event_type, names, cumulative, region, int64_t region_pages, pages, initiators, *,
                 times=None, double mean_gap=0.0):
        if not (len(names) == len(cumulative) > 0 and len(pages) > 0 and len(initiators) > 0):
            raise ValueError("EventDraws needs kinds (as many as weights), page counts and initiators")
        if times is None and not mean_gap >= 0:
            raise ValueError(f"mean_gap must be >= 0, got {mean_gap}")
        self.bit_generator = rng.bit_generator
        self.lock = self.bit_generator.lock
        self.bitgen = <bitgen_t*>PyCapsule_GetPointer(self.bit_generator.capsule, "BitGenerator")
        if not issubclass(event_type, tuple):
            raise TypeError("event_type must be a tuple subclass (a NamedTuple)")
        self.event_type = event_type
        self.names = tuple(names)
        self.region = region
        self.times = iter(times) if times is not None else None
        self.mean_gap = mean_gap
        self.t = 0.0
        self.cumulative = np.array(cumulative, dtype=np.float64)
        self.pages = np.array(pages, dtype=np.int64)
        self.initiators = np.array(initiators, dtype=np.int64)
        self.region_pages = region_pages

    def __iter__(self):
        return self

    cdef int64_t _integer(self, int64_t high) noexcept:
        """Generator.integers(high) for high >= 1."""
        return <int64_t>random_bounded_uint64(self.bitgen, 0, <uint64_t>(high - 1), 0, False)

    cdef Py_ssize_t _kind(self, double u) noexcept:
        """min(bisect.bisect_right(cumulative, u), len - 1), the same binary search."""
        cdef Py_ssize_t lo = 0, hi = self.cumulative.shape[0], mid
        while lo < hi:
            mid = (lo + hi) // 2
            if u < self.cumulative[mid]:
                hi = mid
            else:
                lo = mid + 1
        return min(lo, self.cumulative.shape[0] - 1)

    def __next__(self):
        cdef Py_ssize_t kind = 0
        cdef int64_t n = 0, first = 0, proc = 0
        if self.times is not None:
            t = int(next(self.times))
        with self.lock:
            if self.times is None:
                self.t += random_exponential(self.bitgen, self.mean_gap)
                t = int(self.t)
            kind = self._kind(random_standard_uniform(self.bitgen))
            n = self.pages[self._integer(self.pages.shape[0])]
            first = self._integer(max(1, self.region_pages - n + 1))
            proc = self.initiators[self._integer(self.initiators.shape[0])]
        return tuple.__new__(self.event_type, (t, self.names[kind], proc, self.region, first, n))
