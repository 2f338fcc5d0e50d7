/* TLB and cache reach: a random cyclic pointer chase (Sattolo's algorithm). */
#include "probes.h"

/* ---- pointer chase ------------------------------------------------------------------------------ */

enum { ORDER_RANDOM = 0, ORDER_SEQUENTIAL = 1 };

/* One working set: `n` nodes `spacing` bytes apart, linked in one cycle: random (Sattolo; a node on a
 * random line of its slot) or sequential (node i -> i + 1, node i on line i mod lines of its slot, so
 * consecutive nodes fall in different cache sets). Writes ns per load of each trial to `out` (a warm-up
 * lap excluded); returns < 0 on error. */
static int chase_one(size_t n, size_t spacing, int huge, int order, long loads, int trials, uint64_t seed,
                     double *out)
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
        if (order == ORDER_SEQUENTIAL) {
            next[i] = (i + 1) % n;
            off[i] = i * spacing + (lines > 1 ? (i % lines) * 64 : 0);
        } else {
            off[i] = i * spacing + (lines > 1 ? (rng_next(&s) % lines) * 64 : 0);
        }
    }
    for (size_t i = n - 1; order == ORDER_RANDOM && i > 0; i--) { /* Sattolo: one cycle through all n */
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
    for (int t = 0; t < trials; t++) {
        double t0 = now_ns();
        for (long i = 0; i < loads; i++)
            p = (void **)*p;
        out[t] = (now_ns() - t0) / loads;
    }
    sink = (uintptr_t)p;
    free(next);
    free(off);
    munmap(raw, map);
    return 0;
}

PyObject *py_chase(PyObject *self, PyObject *args)
{
    PyObject *sizes;
    Py_ssize_t spacing;
    int huge, trials, order = ORDER_RANDOM;
    long loads;
    unsigned long long seed;
    if (!PyArg_ParseTuple(args, "OnpliK|i", &sizes, &spacing, &huge, &loads, &trials, &seed, &order))
        return NULL;
    if (trials < 1) {
        PyErr_SetString(PyExc_ValueError, "trials must be >= 1");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(sizes, "sizes must be a sequence of node counts");
    if (!seq)
        return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    size_t *ns = malloc((m ? m : 1) * sizeof(size_t));
    double *out = malloc((m ? m : 1) * trials * sizeof(double));
    int *rc = malloc((m ? m : 1) * sizeof(int));
    for (Py_ssize_t i = 0; i < m; i++) {
        ns[i] = PyLong_AsSize_t(PySequence_Fast_GET_ITEM(seq, i));
        if (ns[i] < 2 && !PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "a working set needs at least 2 nodes");
        if (PyErr_Occurred()) {
            free(ns), free(out), free(rc), Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < m; i++)
        rc[i] = chase_one(ns[i], (size_t)spacing, huge, order, loads, trials, seed + i, out + i * trials);
    Py_END_ALLOW_THREADS;
    PyObject *res = PyList_New(m);
    for (Py_ssize_t i = 0; res && i < m; i++) {
        if (rc[i] < 0) {
            Py_DECREF(res);
            res = PyErr_NoMemory();
            break;
        }
        PyList_SET_ITEM(res, i, trial_list(out + i * trials, trials));
    }
    free(ns), free(out), free(rc);
    return res;
}
