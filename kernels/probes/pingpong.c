/* Context switches: a pipe ping-pong between two processes pinned on one CPU (lmbench lat_ctx). */
#include "probes.h"

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
 * of its own per round; ns per round trip (two switches) of each trial. With `fork_child` false,
 * one process writes and reads its own pipe: the syscall cost without a switch. */
PyObject *py_pingpong(PyObject *self, PyObject *args)
{
    int cpu, trials, fork_child;
    long rounds, pages;
    if (!PyArg_ParseTuple(args, "illip", &cpu, &rounds, &pages, &trials, &fork_child) || !trials_ok(trials))
        return NULL;
    double v[MAX_TRIALS];
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
            if (t)
                v[t - 1] = (now_ns() - t0) / rounds;
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
    return trial_list(v, trials);
}
