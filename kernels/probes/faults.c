/* Page-fault costs: anonymous and shmem first touch. */
#include "probes.h"

/* ---- page faults ------------------------------------------------------------------------------- */

PyObject *py_fault_anon(PyObject *self, PyObject *args)
{
    long n;
    int trials;
    if (!PyArg_ParseTuple(args, "li", &n, &trials) || !trials_ok(trials))
        return NULL;
    double v[MAX_TRIALS];
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
        v[t] = (now_ns() - t0) / n;
        munmap(b, n * PAGE);
    }
    Py_END_ALLOW_THREADS;
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return trial_list(v, trials);
}

/* Read-touch every `stride`-th page of a fresh MAP_SHARED mapping of a memfd. With every page of the file
 * present, one fault maps its whole fault-around window (default 64 KiB); with only the touched pages
 * present, it maps one page: the difference is the cost of the extra pages. ns per touch. */
PyObject *py_fault_shmem(PyObject *self, PyObject *args)
{
    long n, stride;
    int all, trials;
    if (!PyArg_ParseTuple(args, "llpi", &n, &stride, &all, &trials) || !trials_ok(trials))
        return NULL;
    double v[MAX_TRIALS];
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
        v[t] = (now_ns() - t0) / touches;
        sink = acc;
        munmap((void *)m, n * PAGE);
    }
    if (fd >= 0)
        close(fd);
    Py_END_ALLOW_THREADS;
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return trial_list(v, trials);
}
