/* The _probes module: the probes' method table (one file per probe, probes.h). */
#include "probes.h"

static PyMethodDef methods[] = {
    {"chase", py_chase, METH_VARARGS,
     "chase(sizes, spacing, huge, loads, trials, seed, order=0) -> [[ns per load of each trial] per size]: "
     "cyclic pointer chase, order 0 random, 1 sequential"},
    {"fault_anon", py_fault_anon, METH_VARARGS, "fault_anon(pages, trials) -> [ns per first-touch write fault of each trial]"},
    {"fault_shmem", py_fault_shmem, METH_VARARGS,
     "fault_shmem(pages, stride, populate_all, trials) -> [ns per read touch of a fresh memfd mapping, per trial]"},
    {"shootdown", py_shootdown, METH_VARARGS,
     "shootdown(cpus, pages, op, rounds, trials, threshold_ticks, ceiling_ticks) -> ([ns per round], [stolen ticks per round])"},
    {"shootdown_pairs", py_shootdown_pairs, METH_VARARGS,
     "shootdown_pairs(cpus, pages, rounds, pairs, threshold_ticks, ceiling_ticks) -> ([median round ns, mm on "
     "the caller only], [median round ns, mm on all cpus], [median ticks taken from a spinner], [gaps per round "
     "per spinner]) per pair"},
    {"pingpong", py_pingpong, METH_VARARGS,
     "pingpong(cpu, rounds, pages, trials, fork_child) -> [ns per pipe round trip of each trial]"},
    {"tsc_ghz", py_tsc_ghz, METH_VARARGS, "tsc_ghz(ms) -> TSC ticks per ns"},
    {"core_ghz", py_core_ghz, METH_VARARGS, "core_ghz(iters, trials) -> core cycles per ns"},
    {"cpuid", py_cpuid, METH_VARARGS, "cpuid(leaf, subleaf=0) -> (eax, ebx, ecx, edx); zeros past the max leaf"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_probes", "C probes for mshare-hw calibrate", -1, methods};

PyMODINIT_FUNC PyInit__probes(void) { return PyModule_Create(&module); }
