# Allocation helpers for the engine's set-up: zeroed C memory, raising MemoryError (free() releases it).

cdef extern from "<stdlib.h>" nogil:
    void* aligned_alloc(size_t alignment, size_t size)  # C11


cdef int _is_pow2(int64_t n) noexcept:
    return n > 0 and (n & (n - 1)) == 0


cdef void* _calloc(size_t n, size_t size) except NULL:
    cdef void* p = calloc(n if n else 1, size)
    if p == NULL:
        raise MemoryError()
    return p


cdef void* _aligned_calloc(size_t size) except NULL:
    """Zeroed memory on a 64-byte boundary (a set's tag block is one host cache line)."""
    cdef size_t rounded = (size + 63) // 64 * 64 if size else 64
    cdef void* p = aligned_alloc(64, rounded)
    if p == NULL:
        raise MemoryError()
    memset(p, 0, rounded)
    return p
