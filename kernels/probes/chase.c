/* TLB and cache reach: a random cyclic pointer chase (Sattolo's algorithm). */
#include "probes.h"

/* ---- pointer chase ------------------------------------------------------------------------------ */

/* One working set: `n` nodes `spacing` bytes apart (a node on a random line of its slot), linked in one
 * random cycle. Returns the minimum over trials of ns per load, a warm-up lap excluded; < 0 on error. */
static double chase_one(size_t n, size_t spacing, int huge, long loads, int trials, uint64_t seed)
{
    size_t bytes = n * spacing, map = bytes + HUGE;
    char *raw = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return -1;
    char *buf = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
    madvise(buf, bytes, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    size_t *next = malloc(n * sizeof(size_t)), *off = malloc(n * sizeof(size_t));
    if (!next || !off) {
        free(next);
        free(off);
        munmap(raw, map);
        return -1;
    }
    uint64_t s = seed | 1;
    size_t lines = spacing / 64;
    for (size_t i = 0; i < n; i++) {
        next[i] = i;
        off[i] = i * spacing + (lines > 1 ? (rng_next(&s) % lines) * 64 : 0);
    }
    for (size_t i = n - 1; i > 0; i--) { /* Sattolo: a single cycle through all n nodes */
        size_t j = rng_next(&s) % i, t = next[i];
        next[i] = next[j];
        next[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        *(void **)(buf + off[i]) = buf + off[next[i]];
    void **p = (void **)(buf + off[0]);
    for (size_t i = 0; i < n; i++) /* warm-up lap: TLBs and caches hold what they can */
        p = (void **)*p;
    if (loads < (long)n)
        loads = (long)n;
    double best = 1e300;
    for (int t = 0; t < trials; t++) {
        double t0 = now_ns();
        for (long i = 0; i < loads; i++)
            p = (void **)*p;
        double dt = (now_ns() - t0) / loads;
        if (dt < best)
            best = dt;
    }
    sink = (uintptr_t)p;
    free(next);
    free(off);
    munmap(raw, map);
    return best;
}

PyObject *py_chase(PyObject *self, PyObject *args)
{
    PyObject *sizes;
    Py_ssize_t spacing;
    int huge, trials;
    long loads;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OnpliK", &sizes, &spacing, &huge, &loads, &trials, &seed))
        return NULL;
    PyObject *seq = PySequence_Fast(sizes, "sizes must be a sequence of node counts");
    if (!seq)
        return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    size_t *ns = malloc((m ? m : 1) * sizeof(size_t));
    double *out = malloc((m ? m : 1) * sizeof(double));
    for (Py_ssize_t i = 0; i < m; i++) {
        ns[i] = PyLong_AsSize_t(PySequence_Fast_GET_ITEM(seq, i));
        if (ns[i] < 2 && !PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "a working set needs at least 2 nodes");
        if (PyErr_Occurred()) {
            free(ns), free(out), Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < m; i++)
        out[i] = chase_one(ns[i], (size_t)spacing, huge, loads, trials, seed + i);
    Py_END_ALLOW_THREADS;
    PyObject *res = PyList_New(m);
    for (Py_ssize_t i = 0; i < m; i++)
        PyList_SET_ITEM(res, i, PyFloat_FromDouble(out[i]));
    free(ns), free(out);
    return res;
}
