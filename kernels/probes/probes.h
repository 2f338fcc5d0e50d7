/* Microbenchmark probes for `mshare-hw calibrate`: raw timings only (ns from CLOCK_MONOTONIC, TSC ticks
 * where a responder measures time stolen from it); fitting and unit conversion live in
 * mshare_hw/calibrate/. Every probe releases the GIL while it measures.
 *
 * Linux x86-64 only. Methods follow the classic microbenchmarks: a random cyclic pointer chase
 * (Sattolo's algorithm) for TLB and cache reach; first-touch loops for page faults; madvise(MADV_DONTNEED)
 * with the mm loaded on other CPUs (threads spinning in user space) for shootdowns, as in
 * Amit et al., "Optimizing the TLB Shootdown Algorithm with Page Access Tracking" (USENIX ATC 2017);
 * a pipe ping-pong between two processes pinned on one CPU for context switches (lmbench lat_ctx).
 */
#ifndef MSHARE_HW_PROBES_H
#define MSHARE_HW_PROBES_H

#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>
#include <cpuid.h>

#define PAGE 4096UL
#define HUGE (2UL << 20)
#define MAX_TRIALS 64 /* the single-number probes keep every trial on the stack */

static inline double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static inline uint64_t rng_next(uint64_t *s) /* xorshift64* */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* loads feed it so the compiler keeps them; one per file is enough */
static volatile uintptr_t sink;

static inline int pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) ? errno : 0;
}

/* every trial's time as a Python list (the caller takes the minimum and the spread) */
static inline PyObject *trial_list(const double *v, int n)
{
    PyObject *out = PyList_New(n);
    for (int i = 0; out && i < n; i++)
        PyList_SET_ITEM(out, i, PyFloat_FromDouble(v[i]));
    return out;
}

static inline int trials_ok(int trials)
{
    if (trials >= 1 && trials <= MAX_TRIALS)
        return 1;
    PyErr_SetString(PyExc_ValueError, "trials must be between 1 and 64");
    return 0;
}

/* the probes, one file each; module.c registers them */
PyObject *py_chase(PyObject *self, PyObject *args);
PyObject *py_fault_anon(PyObject *self, PyObject *args);
PyObject *py_fault_shmem(PyObject *self, PyObject *args);
PyObject *py_shootdown(PyObject *self, PyObject *args);
PyObject *py_shootdown_pairs(PyObject *self, PyObject *args);
PyObject *py_pingpong(PyObject *self, PyObject *args);
PyObject *py_tsc_ghz(PyObject *self, PyObject *args);
PyObject *py_core_ghz(PyObject *self, PyObject *args);
PyObject *py_cpuid(PyObject *self, PyObject *args);

#endif
