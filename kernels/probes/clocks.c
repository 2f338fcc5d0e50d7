/* The TSC and core clocks, and CPUID. */
#include "probes.h"

/* ---- clocks and CPUID ------------------------------------------------------------------------- */

/* TSC ticks per ns against CLOCK_MONOTONIC over about `ms` milliseconds. */
PyObject *py_tsc_ghz(PyObject *self, PyObject *args)
{
    double ms;
    if (!PyArg_ParseTuple(args, "d", &ms))
        return NULL;
    double ghz;
    Py_BEGIN_ALLOW_THREADS;
    double t0 = now_ns();
    uint64_t c0 = __rdtsc();
    while (now_ns() - t0 < ms * 1e6)
        ;
    uint64_t c1 = __rdtsc();
    ghz = (double)(c1 - c0) / (now_ns() - t0);
    Py_END_ALLOW_THREADS;
    return PyFloat_FromDouble(ghz);
}

/* Core cycles per ns: a chain of dependent one-cycle adds (100 per iteration), minimum over trials. */
PyObject *py_core_ghz(PyObject *self, PyObject *args)
{
    long iters;
    int trials;
    if (!PyArg_ParseTuple(args, "li", &iters, &trials))
        return NULL;
    double best = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (int t = 0; t < trials; t++) {
        uint64_t x = 0;
        double t0 = now_ns();
        for (long i = 0; i < iters; i++)
            __asm__ volatile(".rept 100\n\taddq $1, %0\n\t.endr" : "+r"(x));
        double ghz = 100.0 * iters / (now_ns() - t0);
        sink = x;
        if (ghz > best)
            best = ghz;
    }
    Py_END_ALLOW_THREADS;
    return PyFloat_FromDouble(best);
}

PyObject *py_cpuid(PyObject *self, PyObject *args)
{
    unsigned int leaf, sub = 0, a = 0, b = 0, c = 0, d = 0;
    if (!PyArg_ParseTuple(args, "I|I", &leaf, &sub))
        return NULL;
    if (leaf < 0x80000000U ? __get_cpuid_max(0, NULL) >= leaf : __get_cpuid_max(0x80000000U, NULL) >= leaf)
        __cpuid_count(leaf, sub, a, b, c, d);
    return Py_BuildValue("(IIII)", a, b, c, d);
}
