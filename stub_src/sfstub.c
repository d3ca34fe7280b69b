/*
 * stubforge's harness stub: the process side of `stubforge run`.
 *
 * Same command line as Triton's triton_python_backend_stub (docs/triton-behaviour.md: "The stub process and its probe"):
 *   stub MODEL_PATH SHM_REGION DEFAULT_SIZE GROWTH_SIZE PARENT_PID PYTHON_LIB CONTROL_OFFSET INSTANCE RUNTIME_DIR
 * and, probed with no arguments, the same message and exit status 1.
 *
 * It embeds the CPython it was compiled against without setting a program name, so the interpreter finds its
 * prefix the way the real stub does (the first python3 on PATH). It maps the shared-memory region the parent
 * created, opens the two semaphores named after it, beats a heartbeat in the region from a thread that holds no
 * Python lock, and exits when the parent is gone. Everything else (the message loop, the model, the
 * triton_python_backend_utils API) is Python in PYTHON_LIB, driven through the built-in module `_sfipc`.
 *
 * Start-up: one bare post on the stub->parent semaphore once the region and both semaphores are open (the
 * parent then unlinks their names), then the Python loop's "ready" message.
 *
 * Control block at CONTROL_OFFSET (little-endian, see stubforge/runner/ipc/layout.py, the single source of truth):
 *   +0 magic "SFSTUB01"   +8 region size   +16 heartbeat   +24 message offset   +32 message length
 * Messages start at a multiple of ALIGN.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "SFSTUB01"
#define OFF_SIZE 8
#define OFF_HEARTBEAT 16
#define HEARTBEAT_MS 300
#define OFF_MSG_OFFSET 24
#define OFF_MSG_LENGTH 32
#define ALIGN 64

static int region_fd = -1;
static char *region = NULL;
static size_t region_size = 0;
static size_t control_offset = 0;
static sem_t *to_stub = SEM_FAILED;   /* parent -> stub: a message is waiting */
static sem_t *to_parent = SEM_FAILED; /* stub -> parent: the answer is written */
static pid_t parent_pid = 0;

static volatile uint64_t *control_u64(size_t offset) {
    return (volatile uint64_t *)(region + control_offset + offset);
}

static int map_region(void) {
    struct stat st;
    if (fstat(region_fd, &st) != 0) return -1;
    if ((size_t)st.st_size <= region_size) return 0;
    /* Old mappings stay: numpy arrays handed to the model may still point into them. */
    char *mapped = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, 0);
    if (mapped == MAP_FAILED) return -1;
    region = mapped;
    region_size = (size_t)st.st_size;
    return 0;
}

static void *heartbeat(void *unused) {
    (void)unused;
    struct timespec pause = {0, HEARTBEAT_MS * 1000000L};
    for (;;) {
        __atomic_fetch_add(control_u64(OFF_HEARTBEAT), 1, __ATOMIC_RELAXED);
        /* The parent is gone: nobody will ever read our answers (Triton's stub does the same). Processes the
         * model forked share our process group (the parent started us as a session leader): take them too. */
        if (getppid() != parent_pid || kill(parent_pid, 0) != 0) {
            if (getpgrp() == getpid()) killpg(getpgrp(), SIGKILL); /* ourselves included */
            _exit(0);
        }
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static PyObject *sfipc_region(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    if (map_region() != 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyMemoryView_FromMemory(region, (Py_ssize_t)region_size, PyBUF_WRITE);
}

static PyObject *sfipc_grow(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long size;
    if (!PyArg_ParseTuple(args, "K", &size)) return NULL;
    struct stat st;
    if (fstat(region_fd, &st) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    if (size > (unsigned long long)st.st_size) {
        if (ftruncate(region_fd, (off_t)size) != 0) return PyErr_SetFromErrno(PyExc_OSError);
        /* Allocate now: a sparse page tmpfs cannot supply would kill us with SIGBUS on first touch. */
        int rc = posix_fallocate(region_fd, st.st_size, (off_t)size - st.st_size);
        if (rc != 0) {
            /* Back to the size both sides have mapped, so the region stays usable after the error. */
            if (ftruncate(region_fd, st.st_size) != 0) { /* the error below is the one to report */ }
            errno = rc;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (map_region() != 0) return PyErr_SetFromErrno(PyExc_OSError);
        *control_u64(OFF_SIZE) = region_size;
    }
    return PyMemoryView_FromMemory(region, (Py_ssize_t)region_size, PyBUF_WRITE);
}

static PyObject *sfipc_wait(PyObject *self, PyObject *args) {
    (void)self;
    double timeout;
    if (!PyArg_ParseTuple(args, "d", &timeout)) return NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    long long ns = (long long)(timeout * 1e9) + deadline.tv_nsec;
    deadline.tv_sec += (time_t)(ns / 1000000000LL);
    deadline.tv_nsec = (long)(ns % 1000000000LL);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    do {
        rc = sem_timedwait(to_stub, &deadline);
    } while (rc != 0 && errno == EINTR);
    Py_END_ALLOW_THREADS
    if (rc == 0) Py_RETURN_TRUE;
    if (errno == ETIMEDOUT) Py_RETURN_FALSE;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *sfipc_post(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    if (sem_post(to_parent) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* The message loop's two hot calls in one C call each (a small request spends more time entering Python
 * functions than copying bytes): wait for the parent's message and return a copy of its bytes; write the
 * answer, name it in the control block and wake the parent. */
static PyObject *sfipc_next_message(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    /* No timeout: nothing else is done while waiting (the heartbeat thread ends the process when the parent is
     * gone), and an untimed wait costs the kernel less per message. Signals still reach Python handlers. */
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = sem_wait(to_stub);
        Py_END_ALLOW_THREADS
        if (rc == 0) break;
        if (errno != EINTR) return PyErr_SetFromErrno(PyExc_OSError);
        if (PyErr_CheckSignals() != 0) return NULL;
    }
    int remapped = 0;
    if (*control_u64(OFF_SIZE) > region_size) {
        if (map_region() != 0) return PyErr_SetFromErrno(PyExc_OSError);
        remapped = 1;
    }
    uint64_t offset = *control_u64(OFF_MSG_OFFSET), length = *control_u64(OFF_MSG_LENGTH);
    if (offset > region_size || length > region_size - offset) {
        PyErr_Format(PyExc_ValueError, "message at %llu+%llu lies outside the region (%zu bytes)",
                     (unsigned long long)offset, (unsigned long long)length, region_size);
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize(region + offset, (Py_ssize_t)length);
    if (data == NULL) return NULL;
    return Py_BuildValue("(NKi)", data, (unsigned long long)(offset + length), remapped);
}

static PyObject *sfipc_answer(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer data;
    unsigned long long at;
    if (!PyArg_ParseTuple(args, "y*K", &data, &at)) return NULL;
    at = (at + ALIGN - 1) / ALIGN * ALIGN;
    if (at > region_size || (size_t)data.len > region_size - at) {
        PyBuffer_Release(&data);
        Py_RETURN_FALSE; /* no room: the caller grows the region and writes it itself */
    }
    memcpy(region + at, data.buf, (size_t)data.len);
    *control_u64(OFF_MSG_OFFSET) = at;
    *control_u64(OFF_MSG_LENGTH) = (uint64_t)data.len;
    PyBuffer_Release(&data);
    if (sem_post(to_parent) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_TRUE;
}

static PyMethodDef sfipc_methods[] = {
    {"region", sfipc_region, METH_NOARGS, "The shared region as a writable memoryview (remapped if it grew)."},
    {"grow", sfipc_grow, METH_VARARGS, "Grow the region to at least SIZE bytes; returns the new memoryview."},
    {"wait", sfipc_wait, METH_VARARGS, "Wait up to TIMEOUT seconds for a message; False on timeout."},
    {"post", sfipc_post, METH_NOARGS, "Tell the parent the answer is written."},
    {"next_message", sfipc_next_message, METH_NOARGS,
     "Wait for the parent's message: (its bytes, the offset after it, whether the region was remapped)."},
    {"answer", sfipc_answer, METH_VARARGS,
     "Write DATA at AT (aligned), name it in the control block and wake the parent; False if it does not fit."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sfipc_module = {PyModuleDef_HEAD_INIT, "_sfipc", NULL, -1, sfipc_methods, NULL, NULL, NULL, NULL};

static PyObject *PyInit__sfipc(void) {
    PyObject *module = PyModule_Create(&sfipc_module);
    if (module != NULL) PyModule_AddIntConstant(module, "control_offset", (long)control_offset);
    return module;
}

static int fail(const char *what, const char *name) {
    fprintf(stderr, "stubforge stub: %s %s: %s\n", what, name, strerror(errno));
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 10) {
        /* Triton's stub prints exactly this; r24.10 probes with no arguments and expects exit status 1. */
        fprintf(stderr, "Expected 9 arguments, found %d arguments.\n", argc);
        return 1;
    }
    const char *region_name = argv[2];
    parent_pid = (pid_t)atol(argv[5]);
    control_offset = (size_t)strtoull(argv[7], NULL, 10);

    region_fd = shm_open(region_name, O_RDWR, 0);
    if (region_fd < 0) return fail("cannot open shared memory", region_name);
    if (map_region() != 0 || region_size < control_offset + 64) return fail("cannot map", region_name);
    if (memcmp(region + control_offset, MAGIC, 8) != 0) {
        fprintf(stderr, "stubforge stub: %s is not a stubforge region\n", region_name);
        return 1;
    }
    char sem_name[512];
    snprintf(sem_name, sizeof sem_name, "%s_p2s", region_name);
    to_stub = sem_open(sem_name, 0);
    if (to_stub == SEM_FAILED) return fail("cannot open semaphore", sem_name);
    snprintf(sem_name, sizeof sem_name, "%s_s2p", region_name);
    to_parent = sem_open(sem_name, 0);
    if (to_parent == SEM_FAILED) return fail("cannot open semaphore", sem_name);

    /* Attached: the parent may now unlink every name, so nothing can be left in /dev/shm from here on,
     * whatever happens to either process. The first message follows when the Python side is up. */
    if (sem_post(to_parent) != 0) return fail("cannot post", sem_name);

    pthread_t beat;
    if (pthread_create(&beat, NULL, heartbeat, NULL) != 0) return fail("cannot start", "heartbeat");
    pthread_detach(beat);

    PyImport_AppendInittab("_sfipc", PyInit__sfipc);
    Py_Initialize();
    int status = 1;
    PyObject *sys_path = PySys_GetObject("path"); /* borrowed */
    PyObject *lib = PyUnicode_DecodeFSDefault(argv[6]);
    if (sys_path != NULL && lib != NULL && PyList_Append(sys_path, lib) == 0) {
        PyObject *loop = PyImport_ImportModule("_stubforge_loop");
        if (loop != NULL) {
            PyObject *args = PyList_New(0);
            for (int i = 0; args != NULL && i < argc; i++) {
                PyObject *arg = PyUnicode_DecodeFSDefault(argv[i]);
                if (arg == NULL || PyList_Append(args, arg) != 0) {
                    Py_XDECREF(arg);
                    Py_CLEAR(args);
                    break;
                }
                Py_DECREF(arg);
            }
            PyObject *result = args ? PyObject_CallMethod(loop, "main", "O", args) : NULL;
            if (result != NULL) {
                status = (int)PyLong_AsLong(result);
                Py_DECREF(result);
            }
            Py_XDECREF(args);
            Py_DECREF(loop);
        }
    }
    Py_XDECREF(lib);
    if (PyErr_Occurred()) PyErr_Print();
    fflush(stdout);
    fflush(stderr);
    /* No Py_Finalize: model threads may still run; the parent has our answer already. */
    _exit(status);
}
