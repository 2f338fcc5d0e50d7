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
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>
#include <cpuid.h>

#define PAGE 4096UL
#define HUGE (2UL << 20)

static inline double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s) /* xorshift64* */
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static volatile uintptr_t sink;

static int pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) ? errno : 0;
}

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

static PyObject *py_chase(PyObject *self, PyObject *args)
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

/* ---- page faults ------------------------------------------------------------------------------- */

static PyObject *py_fault_anon(PyObject *self, PyObject *args)
{
    long n;
    int trials;
    if (!PyArg_ParseTuple(args, "li", &n, &trials))
        return NULL;
    double best = 1e300;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (int t = 0; t < trials && !err; t++) {
        char *b = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED) {
            err = errno;
            break;
        }
        madvise(b, n * PAGE, MADV_NOHUGEPAGE);
        double t0 = now_ns();
        for (long i = 0; i < n; i++)
            b[i * PAGE] = 1;
        double dt = (now_ns() - t0) / n;
        if (dt < best)
            best = dt;
        munmap(b, n * PAGE);
    }
    Py_END_ALLOW_THREADS;
    if (err)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyFloat_FromDouble(best);
}

/* Read-touch every `stride`-th page of a fresh MAP_SHARED mapping of a memfd. With every page of the file
 * present, one fault maps its whole fault-around window (default 64 KiB); with only the touched pages
 * present, it maps one page: the difference is the cost of the extra pages. ns per touch. */
static PyObject *py_fault_shmem(PyObject *self, PyObject *args)
{
    long n, stride;
    int all, trials;
    if (!PyArg_ParseTuple(args, "llpi", &n, &stride, &all, &trials))
        return NULL;
    double best = 1e300;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS;
    int fd = memfd_create("mshare-hw-probe", 0);
    if (fd < 0 || ftruncate(fd, n * PAGE)) {
        err = errno;
    } else {
        char one = 1;
        for (long i = 0; i < n && !err; i++)
            if ((all || i % stride == 0) && pwrite(fd, &one, 1, i * PAGE) != 1)
                err = errno;
    }
    for (int t = 0; t < trials && !err; t++) {
        volatile char *m = mmap(NULL, n * PAGE, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            err = errno;
            break;
        }
        long touches = 0;
        char acc = 0;
        double t0 = now_ns();
        for (long i = 0; i < n; i += stride, touches++)
            acc += m[i * PAGE];
        double dt = (now_ns() - t0) / touches;
        sink = acc;
        if (dt < best)
            best = dt;
        munmap((void *)m, n * PAGE);
    }
    if (fd >= 0)
        close(fd);
    Py_END_ALLOW_THREADS;
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyFloat_FromDouble(best);
}

/* ---- shootdowns ------------------------------------------------------------------------------- */

struct spinner {
    pthread_t th;
    int cpu, err;
    uint64_t threshold;          /* TSC ticks: a longer gap between two reads was taken by the kernel */
    volatile int started, stop, counting;
    volatile uint64_t stolen;    /* ticks in such gaps while counting */
};

static void *spin(void *arg)
{
    struct spinner *s = arg;
    s->err = pin_self(s->cpu);
    __atomic_store_n(&s->started, 1, __ATOMIC_RELEASE);
    uint64_t last = __rdtsc(), stolen = 0;
    while (!s->stop) {
        uint64_t t = __rdtsc();
        if (t - last > s->threshold && s->counting)
            stolen += t - last;
        if (!s->counting && stolen) {
            s->stolen += stolen;
            stolen = 0;
        }
        last = t;
    }
    s->stolen += stolen;
    return NULL;
}

enum { OP_MADVISE = 0, OP_MPROTECT = 1 };

/* `rounds` rounds of `op` on `n` pages: madvise(MADV_DONTNEED) then write-refault every page, or an
 * mprotect(PROT_READ) + mprotect(PROT_READ|PROT_WRITE) round trip; the caller runs on cpus[0] and the mm
 * is loaded on cpus[1..n_remote] by threads spinning in user space. Returns (ns per round of each trial,
 * TSC ticks stolen per round from each remote thread summed over threads, per trial). */
static PyObject *py_shootdown(PyObject *self, PyObject *args)
{
    PyObject *cpus_obj;
    long n, rounds;
    int op, trials;
    unsigned long long threshold;
    if (!PyArg_ParseTuple(args, "OliliK", &cpus_obj, &n, &op, &rounds, &trials, &threshold))
        return NULL;
    PyObject *seq = PySequence_Fast(cpus_obj, "cpus must be a sequence of CPU numbers");
    if (!seq)
        return NULL;
    Py_ssize_t ncpu = PySequence_Fast_GET_SIZE(seq);
    if (ncpu < 1 || ncpu > 1024) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "cpus: give 1 to 1024 CPUs");
        return NULL;
    }
    int cpus[1024];
    for (Py_ssize_t i = 0; i < ncpu; i++)
        cpus[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
    Py_DECREF(seq);
    if (PyErr_Occurred())
        return NULL;
    double *ns = calloc(trials, sizeof(double)), *stolen = calloc(trials, sizeof(double));
    struct spinner *sp = calloc(ncpu, sizeof(struct spinner));
    int err = 0;
    cpu_set_t saved;
    Py_BEGIN_ALLOW_THREADS;
    sched_getaffinity(0, sizeof(saved), &saved);
    err = pin_self(cpus[0]);
    char *b = err ? MAP_FAILED : mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!err && b == MAP_FAILED)
        err = errno;
    int started = 0;
    for (Py_ssize_t k = 1; k < ncpu && !err; k++) {
        sp[k].cpu = cpus[k];
        sp[k].threshold = threshold;
        if ((err = pthread_create(&sp[k].th, NULL, spin, &sp[k])))
            break;
        started = (int)k;
        while (!__atomic_load_n(&sp[k].started, __ATOMIC_ACQUIRE))
            sched_yield();
        err = sp[k].err;
    }
    if (!err) {
        madvise(b, n * PAGE, MADV_NOHUGEPAGE);
        for (long i = 0; i < n; i++)
            b[i * PAGE] = 1;
        for (int t = 0; t < trials; t++) {
            for (int k = 1; k <= started; k++) {
                sp[k].stolen = 0;
                sp[k].counting = 1;
            }
            double t0 = now_ns();
            for (long r = 0; r < rounds; r++) {
                if (op == OP_MADVISE) {
                    madvise(b, n * PAGE, MADV_DONTNEED);
                    for (long i = 0; i < n; i++)
                        b[i * PAGE] = 1;
                } else {
                    mprotect(b, n * PAGE, PROT_READ);
                    mprotect(b, n * PAGE, PROT_READ | PROT_WRITE);
                }
            }
            ns[t] = (now_ns() - t0) / rounds;
            for (int k = 1; k <= started; k++)
                sp[k].counting = 0;
            for (int k = 1; k <= started; k++) { /* wait for each spinner to publish its count */
                uint64_t before;
                do {
                    before = sp[k].stolen;
                    usleep(200);
                } while (sp[k].stolen != before);
                stolen[t] += (double)sp[k].stolen / rounds;
            }
        }
    }
    for (int k = 1; k <= started; k++) {
        sp[k].stop = 1;
        pthread_join(sp[k].th, NULL);
    }
    if (b != MAP_FAILED)
        munmap(b, n * PAGE);
    sched_setaffinity(0, sizeof(saved), &saved);
    Py_END_ALLOW_THREADS;
    PyObject *res = NULL;
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        PyObject *a = PyList_New(trials), *s = PyList_New(trials);
        for (int t = 0; t < trials; t++) {
            PyList_SET_ITEM(a, t, PyFloat_FromDouble(ns[t]));
            PyList_SET_ITEM(s, t, PyFloat_FromDouble(stolen[t]));
        }
        res = Py_BuildValue("(NN)", a, s);
    }
    free(ns), free(stolen), free(sp);
    return res;
}

/* ---- context switches ------------------------------------------------------------------------ */

static void touch(volatile char *b, long pages)
{
    char acc = 0;
    for (long i = 0; i < pages; i++)
        acc += b[i * PAGE];
    sink = acc;
}

static char *prefaulted(long pages)
{
    if (!pages)
        return NULL;
    char *b = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        return NULL;
    madvise(b, pages * PAGE, MADV_NOHUGEPAGE);
    for (long i = 0; i < pages; i++)
        b[i * PAGE + (i * 64) % PAGE] = 1;
    return b;
}

/* Two processes pinned on `cpu` pass a byte back and forth through two pipes, each touching `pages` pages
 * of its own per round; ns per round trip (two switches), minimum over trials. With `fork_child` false,
 * one process writes and reads its own pipe: the syscall cost without a switch. */
static PyObject *py_pingpong(PyObject *self, PyObject *args)
{
    int cpu, trials, fork_child;
    long rounds, pages;
    if (!PyArg_ParseTuple(args, "illip", &cpu, &rounds, &pages, &trials, &fork_child))
        return NULL;
    double best = 1e300;
    int err = 0;
    cpu_set_t saved;
    Py_BEGIN_ALLOW_THREADS;
    int ab[2], ba[2];
    sched_getaffinity(0, sizeof(saved), &saved);
    if (pipe(ab) || pipe(ba))
        err = errno;
    else
        err = pin_self(cpu);
    pid_t child = -1;
    char c = 0;
    if (!err && fork_child) {
        child = fork();
        if (child == 0) {
            char *mine = prefaulted(pages);
            close(ab[1]);
            close(ba[0]);
            while (read(ab[0], &c, 1) == 1) {
                touch(mine, pages);
                if (write(ba[1], &c, 1) != 1)
                    break;
            }
            _exit(0);
        }
        if (child < 0)
            err = errno;
    }
    if (!err) {
        char *mine = prefaulted(pages);
        int out = ab[1], in = fork_child ? ba[0] : ab[0];
        for (int t = 0; t <= trials && !err; t++) { /* trial 0 is a warm-up */
            double t0 = now_ns();
            for (long r = 0; r < rounds; r++) {
                if (write(out, &c, 1) != 1 || read(in, &c, 1) != 1) {
                    err = errno ? errno : EPIPE;
                    break;
                }
                touch(mine, pages);
            }
            double dt = (now_ns() - t0) / rounds;
            if (t && dt < best)
                best = dt;
        }
        if (mine)
            munmap(mine, pages * PAGE);
    }
    close(ab[0]), close(ab[1]), close(ba[0]), close(ba[1]);
    if (child > 0)
        waitpid(child, NULL, 0);
    sched_setaffinity(0, sizeof(saved), &saved);
    Py_END_ALLOW_THREADS;
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyFloat_FromDouble(best);
}

/* ---- clocks and CPUID ------------------------------------------------------------------------- */

/* TSC ticks per ns against CLOCK_MONOTONIC over about `ms` milliseconds. */
static PyObject *py_tsc_ghz(PyObject *self, PyObject *args)
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
static PyObject *py_core_ghz(PyObject *self, PyObject *args)
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

static PyObject *py_cpuid(PyObject *self, PyObject *args)
{
    unsigned int leaf, sub = 0, a = 0, b = 0, c = 0, d = 0;
    if (!PyArg_ParseTuple(args, "I|I", &leaf, &sub))
        return NULL;
    if (leaf < 0x80000000U ? __get_cpuid_max(0, NULL) >= leaf : __get_cpuid_max(0x80000000U, NULL) >= leaf)
        __cpuid_count(leaf, sub, a, b, c, d);
    return Py_BuildValue("(IIII)", a, b, c, d);
}

static PyMethodDef methods[] = {
    {"chase", py_chase, METH_VARARGS,
     "chase(sizes, spacing, huge, loads, trials, seed) -> [ns per load]: random cyclic pointer chase"},
    {"fault_anon", py_fault_anon, METH_VARARGS, "fault_anon(pages, trials) -> ns per first-touch write fault"},
    {"fault_shmem", py_fault_shmem, METH_VARARGS,
     "fault_shmem(pages, stride, populate_all, trials) -> ns per read touch of a fresh memfd mapping"},
    {"shootdown", py_shootdown, METH_VARARGS,
     "shootdown(cpus, pages, op, rounds, trials, threshold_ticks) -> ([ns per round], [stolen ticks per round])"},
    {"pingpong", py_pingpong, METH_VARARGS,
     "pingpong(cpu, rounds, pages, trials, fork_child) -> ns per pipe round trip"},
    {"tsc_ghz", py_tsc_ghz, METH_VARARGS, "tsc_ghz(ms) -> TSC ticks per ns"},
    {"core_ghz", py_core_ghz, METH_VARARGS, "core_ghz(iters, trials) -> core cycles per ns"},
    {"cpuid", py_cpuid, METH_VARARGS, "cpuid(leaf, subleaf=0) -> (eax, ebx, ecx, edx); zeros past the max leaf"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_probes", "C probes for mshare-hw calibrate", -1, methods};

PyMODINIT_FUNC PyInit__probes(void) { return PyModule_Create(&module); }
