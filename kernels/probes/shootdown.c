/* TLB shootdowns: madvise/mprotect with the mm loaded on other CPUs (threads spinning in user space). */
#include "probes.h"

/* ---- shootdowns ------------------------------------------------------------------------------- */

struct spinner {
    pthread_t th;
    int cpu, err;
    uint64_t threshold;          /* TSC ticks: a longer gap between two reads was taken by the kernel */
    uint64_t ceiling;            /* TSC ticks: a longer gap was the host descheduling the vCPU, not an IPI */
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
        if (t - last > s->threshold && t - last <= s->ceiling && s->counting)
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

#define ROUND_OUTLIER 4 /* a round this many times the median was preempted (or hit a rare slow path) */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* mean of the rounds no longer than ROUND_OUTLIER times their median */
static double trimmed_mean(const uint64_t *ticks, uint64_t *sorted, long rounds)
{
    memcpy(sorted, ticks, rounds * sizeof(uint64_t));
    qsort(sorted, rounds, sizeof(uint64_t), cmp_u64);
    uint64_t limit = sorted[rounds / 2] * ROUND_OUTLIER;
    double sum = 0;
    long kept = 0;
    for (long r = 0; r < rounds; r++)
        if (ticks[r] <= limit)
            sum += (double)ticks[r], kept++;
    return sum / kept;
}

/* `rounds` rounds of `op` on `n` pages: madvise(MADV_DONTNEED) then write-refault every page, or an
 * mprotect(PROT_READ) + mprotect(PROT_READ|PROT_WRITE) round trip; the caller runs on cpus[0] and the mm
 * is loaded on cpus[1..n_remote] by threads spinning in user space. Returns (ns per round of each trial,
 * TSC ticks stolen per round from each remote thread summed over threads, per trial). On a virtual machine
 * the host may deschedule a vCPU for milliseconds at any time: a round longer than ROUND_OUTLIER times the
 * trial's median round is left out of the trial's mean, and a responder's gap longer than `ceiling` ticks is
 * not counted as stolen by the kernel. */
PyObject *py_shootdown(PyObject *self, PyObject *args)
{
    PyObject *cpus_obj;
    long n, rounds;
    int op, trials;
    unsigned long long threshold, ceiling;
    if (!PyArg_ParseTuple(args, "OliliKK", &cpus_obj, &n, &op, &rounds, &trials, &threshold, &ceiling))
        return NULL;
    if (rounds < 1 || trials < 1) {
        PyErr_SetString(PyExc_ValueError, "rounds and trials must be positive");
        return NULL;
    }
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
    uint64_t *ticks = calloc(rounds, sizeof(uint64_t)), *sorted = calloc(rounds, sizeof(uint64_t));
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
        sp[k].ceiling = ceiling;
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
            uint64_t c0 = __rdtsc();
            for (long r = 0; r < rounds; r++) {
                uint64_t r0 = __rdtsc();
                if (op == OP_MADVISE) {
                    madvise(b, n * PAGE, MADV_DONTNEED);
                    for (long i = 0; i < n; i++)
                        b[i * PAGE] = 1;
                } else {
                    mprotect(b, n * PAGE, PROT_READ);
                    mprotect(b, n * PAGE, PROT_READ | PROT_WRITE);
                }
                ticks[r] = __rdtsc() - r0;
            }
            double ns_per_tick = (now_ns() - t0) / (double)(__rdtsc() - c0);
            ns[t] = trimmed_mean(ticks, sorted, rounds) * ns_per_tick;
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
    free(ns), free(stolen), free(ticks), free(sorted), free(sp);
    return res;
}
