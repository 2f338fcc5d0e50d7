/* TLB shootdowns: madvise/mprotect with the mm loaded on other CPUs (threads spinning in user space). */
#include "probes.h"

/* ---- shootdowns ------------------------------------------------------------------------------- */

struct spinner {
    pthread_t th;
    int cpu, err;
    uint64_t threshold;          /* TSC ticks: a longer gap between two reads was taken by the kernel */
    uint64_t ceiling;            /* TSC ticks: a longer gap was the host descheduling the vCPU, not an IPI */
    volatile int started, stop, counting;
    volatile int park;           /* 1: block in the kernel (the CPU goes idle; the mm stays only lazily) */
    volatile int running;        /* 0 while parked */
    volatile uint64_t stolen;    /* ticks in such gaps while counting */
    uint64_t *gaps;              /* each such gap's ticks while counting, up to gap_cap (NULL: not kept) */
    long gap_cap;
    volatile long n_gaps;
};

static void *spin(void *arg)
{
    struct spinner *s = arg;
    s->err = pin_self(s->cpu);
    s->running = 1;
    __atomic_store_n(&s->started, 1, __ATOMIC_RELEASE);
    uint64_t last = __rdtsc(), stolen = 0;
    while (!s->stop) {
        if (s->park) {
            s->running = 0;
            while (s->park && !s->stop)
                syscall(SYS_futex, &s->park, FUTEX_WAIT, 1, NULL, NULL, 0);
            s->running = 1;
            last = __rdtsc();
            continue;
        }
        uint64_t t = __rdtsc();
        if (t - last > s->threshold && t - last <= s->ceiling && s->counting) {
            stolen += t - last;
            if (s->n_gaps < s->gap_cap)
                s->gaps[s->n_gaps++] = t - last;
        }
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
#define WARMUP_ROUNDS 20 /* rounds run, untimed, after the spinners change state */

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

static double median(const uint64_t *ticks, uint64_t *sorted, long rounds)
{
    memcpy(sorted, ticks, rounds * sizeof(uint64_t));
    qsort(sorted, rounds, sizeof(uint64_t), cmp_u64);
    return (double)sorted[rounds / 2];
}

/* `rounds` rounds of `op` on the `n` pages at `b`, each round's TSC ticks into `ticks`; returns ns per tick */
static double run_rounds(char *b, long n, int op, long rounds, uint64_t *ticks)
{
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
    return (now_ns() - t0) / (double)(__rdtsc() - c0);
}

/* the shared set-up of a shootdown probe: the caller pinned on cpus[0], `n` touched pages, a spinner per
 * other CPU (parked or spinning), and its undoing */
struct bench {
    int cpus[1024];
    Py_ssize_t ncpu;
    int started;
    char *b;
    long n;
    struct spinner *sp;
    cpu_set_t saved;
};

static int parse_cpus(PyObject *obj, struct bench *w)
{
    PyObject *seq = PySequence_Fast(obj, "cpus must be a sequence of CPU numbers");
    if (!seq)
        return -1;
    w->ncpu = PySequence_Fast_GET_SIZE(seq);
    if (w->ncpu < 1 || w->ncpu > 1024) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "cpus: give 1 to 1024 CPUs");
        return -1;
    }
    for (Py_ssize_t i = 0; i < w->ncpu; i++)
        w->cpus[i] = (int)PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
    Py_DECREF(seq);
    return PyErr_Occurred() ? -1 : 0;
}

/* no Python calls: runs without the GIL. Returns 0 or an errno. */
static int bench_start(struct bench *w, uint64_t threshold, uint64_t ceiling, int parked)
{
    int err = 0;
    w->started = 0;
    sched_getaffinity(0, sizeof(w->saved), &w->saved);
    err = pin_self(w->cpus[0]);
    w->b = err ? MAP_FAILED : mmap(NULL, w->n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (!err && w->b == MAP_FAILED)
        err = errno;
    for (Py_ssize_t k = 1; k < w->ncpu && !err; k++) {
        struct spinner *s = &w->sp[k];
        s->cpu = w->cpus[k];
        s->threshold = threshold;
        s->ceiling = ceiling;
        s->park = parked;
        if ((err = pthread_create(&s->th, NULL, spin, s)))
            break;
        w->started = (int)k;
        while (!__atomic_load_n(&s->started, __ATOMIC_ACQUIRE))
            sched_yield();
        err = s->err;
    }
    if (!err) {
        madvise(w->b, w->n * PAGE, MADV_NOHUGEPAGE);
        for (long i = 0; i < w->n; i++)
            w->b[i * PAGE] = 1;
    }
    return err;
}

static void bench_stop(struct bench *w)
{
    for (int k = 1; k <= w->started; k++) {
        w->sp[k].stop = 1;
        syscall(SYS_futex, &w->sp[k].park, FUTEX_WAKE, 1, NULL, NULL, 0);
        pthread_join(w->sp[k].th, NULL);
    }
    if (w->b != MAP_FAILED)
        munmap(w->b, w->n * PAGE);
    sched_setaffinity(0, sizeof(w->saved), &w->saved);
}

static void count_stolen(struct bench *w, int on)
{
    for (int k = 1; k <= w->started; k++) {
        if (on)
            w->sp[k].stolen = 0, w->sp[k].n_gaps = 0;
        w->sp[k].counting = on;
    }
}

/* the ticks the spinners lost in the kernel while counting, summed over them: waits for each spinner to
 * publish its count */
static double stolen_ticks(struct bench *w)
{
    double sum = 0;
    for (int k = 1; k <= w->started; k++) {
        uint64_t before;
        do {
            before = w->sp[k].stolen;
            usleep(200);
        } while (w->sp[k].stolen != before);
        sum += (double)w->sp[k].stolen;
    }
    return sum;
}

static void set_parked(struct bench *w, int parked)
{
    for (int k = 1; k <= w->started; k++) {
        w->sp[k].park = parked;
        if (!parked)
            syscall(SYS_futex, &w->sp[k].park, FUTEX_WAKE, 1, NULL, NULL, 0);
    }
    for (int k = 1; k <= w->started; k++)
        while (w->sp[k].running == parked)
            sched_yield();
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
    if (rounds < 1 || trials < 1 || n < 1) {
        PyErr_SetString(PyExc_ValueError, "pages, rounds and trials must be positive");
        return NULL;
    }
    struct bench w = {.n = n};
    if (parse_cpus(cpus_obj, &w))
        return NULL;
    double *ns = calloc(trials, sizeof(double)), *stolen = calloc(trials, sizeof(double));
    uint64_t *ticks = calloc(rounds, sizeof(uint64_t)), *sorted = calloc(rounds, sizeof(uint64_t));
    w.sp = calloc(w.ncpu, sizeof(struct spinner));
    int err;
    Py_BEGIN_ALLOW_THREADS;
    err = bench_start(&w, threshold, ceiling, 0);
    for (int t = 0; t < trials && !err; t++) {
        count_stolen(&w, 1);
        double ns_per_tick = run_rounds(w.b, n, op, rounds, ticks);
        ns[t] = trimmed_mean(ticks, sorted, rounds) * ns_per_tick;
        count_stolen(&w, 0);
        stolen[t] = stolen_ticks(&w) / rounds;
    }
    bench_stop(&w);
    Py_END_ALLOW_THREADS;
    PyObject *res = NULL;
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        res = Py_BuildValue("(NN)", trial_list(ns, trials), trial_list(stolen, trials));
    }
    free(ns), free(stolen), free(ticks), free(sorted), free(w.sp);
    return res;
}

/* Paired madvise(MADV_DONTNEED) + refault of `n` pages: each of `pairs` pairs runs `rounds` rounds with
 * the spinners on cpus[1..] parked (blocked in the kernel: their CPUs idle with the mm at most lazily
 * loaded, which x86 skips for a flush that frees no page tables, arch/x86/mm/tlb.c), then `rounds` with them
 * spinning in user space, the same threads throughout. Returns, per pair: the median round's ns with none
 * holding the mm, the same with all holding it, the median gap (TSC ticks) the kernel took from a spinner
 * (one per IPI), and the gaps per round per spinner (about 1 when every flush interrupted every spinner).
 * Medians, not means: the host's interruptions only ever lengthen a round or a gap. The two halves of a
 * pair are milliseconds apart, so a change on the host between them (a vCPU moved to another core: the
 * IPI's latency changes for seconds) shows as a pair of its own, not as a difference. */
PyObject *py_shootdown_pairs(PyObject *self, PyObject *args)
{
    PyObject *cpus_obj;
    long n, rounds;
    int pairs;
    unsigned long long threshold, ceiling;
    if (!PyArg_ParseTuple(args, "OlliKK", &cpus_obj, &n, &rounds, &pairs, &threshold, &ceiling))
        return NULL;
    if (rounds < 1 || pairs < 1 || n < 1) {
        PyErr_SetString(PyExc_ValueError, "pages, rounds and pairs must be positive");
        return NULL;
    }
    struct bench w = {.n = n};
    if (parse_cpus(cpus_obj, &w))
        return NULL;
    if (w.ncpu < 2) {
        PyErr_SetString(PyExc_ValueError, "cpus: a pair needs the caller's CPU and at least one other");
        return NULL;
    }
    long cap = 4 * rounds + 64; /* gaps kept per spinner and half pair: an IPI each round, and timer ticks */
    double *alone = calloc(pairs, sizeof(double)), *held = calloc(pairs, sizeof(double));
    double *gap = calloc(pairs, sizeof(double)), *per_round = calloc(pairs, sizeof(double));
    uint64_t *ticks = calloc(rounds, sizeof(uint64_t)), *sorted = calloc(rounds, sizeof(uint64_t));
    uint64_t *all_gaps = calloc(cap * (w.ncpu - 1), sizeof(uint64_t));
    w.sp = calloc(w.ncpu, sizeof(struct spinner));
    for (Py_ssize_t k = 1; k < w.ncpu; k++)
        w.sp[k].gaps = calloc(cap, sizeof(uint64_t)), w.sp[k].gap_cap = cap;
    int err;
    Py_BEGIN_ALLOW_THREADS;
    err = bench_start(&w, threshold, ceiling, 1);
    for (int t = 0; t < pairs && !err; t++) {
        set_parked(&w, 1);
        run_rounds(w.b, n, OP_MADVISE, WARMUP_ROUNDS < rounds ? WARMUP_ROUNDS : rounds, ticks);
        double ns_per_tick = run_rounds(w.b, n, OP_MADVISE, rounds, ticks);
        alone[t] = median(ticks, sorted, rounds) * ns_per_tick;
        set_parked(&w, 0);
        run_rounds(w.b, n, OP_MADVISE, WARMUP_ROUNDS < rounds ? WARMUP_ROUNDS : rounds, ticks);
        count_stolen(&w, 1);
        ns_per_tick = run_rounds(w.b, n, OP_MADVISE, rounds, ticks);
        held[t] = median(ticks, sorted, rounds) * ns_per_tick;
        count_stolen(&w, 0);
        stolen_ticks(&w); /* waits for the spinners to stop recording */
        long total = 0;
        for (int k = 1; k <= w.started; k++) {
            memcpy(all_gaps + total, w.sp[k].gaps, w.sp[k].n_gaps * sizeof(uint64_t));
            total += w.sp[k].n_gaps;
        }
        if (total) {
            qsort(all_gaps, total, sizeof(uint64_t), cmp_u64);
            gap[t] = (double)all_gaps[total / 2];
        }
        per_round[t] = (double)total / rounds / (w.started ? w.started : 1);
    }
    bench_stop(&w);
    Py_END_ALLOW_THREADS;
    PyObject *res = NULL;
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
    } else {
        res = Py_BuildValue("(NNNN)", trial_list(alone, pairs), trial_list(held, pairs), trial_list(gap, pairs),
                            trial_list(per_round, pairs));
    }
    for (Py_ssize_t k = 1; k < w.ncpu; k++)
        free(w.sp[k].gaps);
    free(alone), free(held), free(gap), free(per_round), free(ticks), free(sorted), free(all_gaps), free(w.sp);
    return res;
}
