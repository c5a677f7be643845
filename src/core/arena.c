/*
 * arena.c -- the shared-memory arena's life cycle: create (a memfd mapped MAP_SHARED), attach
 * (a spawned child, by fd), re-attach after fork, detach, and the handle's accessors (see
 * DESIGN.md "The arena"). The layout is in arena_internal.h; the allocator in arena_alloc.c,
 * the process table in arena_proc.c, copies in arena_copy.c, statistics and the consistency
 * walk in arena_stats.c, reference-counted objects in arena_obj.c.
 */
#include "arena_internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

/* ---------------------------------------------------------------- create / attach */

/* The unsigned decimal in environment variable `name`, else `dflt`. */
static uint64_t gf__env_u64(const char *name, uint64_t dflt) {
    const char *e = getenv(name);
    if (!e || !*e) return dflt;
    char *end;
    unsigned long long v = strtoull(e, &end, 10);
    return *end || v > ((uint64_t)1 << 40) ? dflt : (uint64_t)v;
}

/* Map the memfd and fill a handle. Result 0. Fails: GF_ENOMEM. */
static int gf__map(int fd, size_t size, gf_arena **out) {
    gf_arena *a = calloc(1, sizeof *a);
    if (!a) return GF_ENOMEM;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        /* EINVAL/EOVERFLOW here mean the size does not fit the address space. */
        int err = errno == ENFILE || errno == EMFILE ? GF_EMFILE : GF_ENOMEM;
        free(a);
        return err;
    }
    a->base = p;
    a->size = size;
    a->fd = fd;
    a->h = p;
    a->slot = GF_ARENA_MAX_PROCS;
    a->warm_ms = gf__env_u64("GILFREE_ARENA_WARM_MS", 1000);
    /* 256 MiB: a 100 MB NumPy round trip frees two 100 MB blocks per call; with 64 MiB both
     * were punched and faulted in again every call (bench numpy_new 8.4x -> 30x stdlib,
     * numpy_array 22x -> 90x). Freed memory still goes back after warm_ms. */
    a->warm_budget = gf__env_u64("GILFREE_ARENA_WARM_MB", 256) << 20;
    uint64_t lt = gf__env_u64("GILFREE_ARENA_LEDGER_TABLES", GF__LTAB_MAX);
    a->ledger_tables = (uint32_t)(lt < GF__LTAB_MAX ? lt : GF__LTAB_MAX);
    *out = a;
    return 0;
}

static void gf__unmap(gf_arena *a) {
    munmap(a->base, a->size);
    close(a->fd);
    free(a);
}

/* Create an arena of `reserve` bytes (0 = default) and attach to it. Result 0 and *out.
 * Fails: GF_EINVAL (reserve too small), GF_ENOMEM, GF_EMFILE, GF_ENOSYS. */
int gf_arena_create(size_t reserve, gf_arena **out) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_start = (sizeof(gf__arena_hdr) + page - 1) & ~(page - 1);
    if (reserve == 0) reserve = GF_ARENA_DEFAULT_RESERVE;
    if (reserve < data_start + ((size_t)1 << 20) || reserve > ((size_t)1 << 50))
        return GF_EINVAL;
    reserve = (reserve + page - 1) & ~(page - 1);

    /* MFD_NOEXEC_SEAL keeps newer kernels from warning about executable memfds; older
     * kernels reject the flag with EINVAL. */
    int fd = (int)syscall(SYS_memfd_create, "gilfree", MFD_CLOEXEC | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) fd = (int)syscall(SYS_memfd_create, "gilfree", MFD_CLOEXEC);
    if (fd < 0) return errno == ENOSYS ? GF_ENOSYS : gf__errno_code(errno);
    if (ftruncate(fd, (off_t)reserve) < 0) {
        int err = errno == EFBIG || errno == EINVAL ? GF_EINVAL : gf__errno_code(errno);
        close(fd);
        return err == GF_EIO ? GF_ENOMEM : err;
    }
    gf_arena *a = NULL;
    int err = gf__map(fd, reserve, &a);
    if (err) {
        close(fd);
        return err;
    }
    /* Nobody else can see the memfd yet: plain stores. The fresh memfd reads as zeros. */
    gf__arena_hdr *h = a->h;
    h->version = GF__ARENA_VERSION;
    h->max_procs = GF_ARENA_MAX_PROCS;
    h->reserve = reserve;
    h->data_start = data_start;
    h->top = data_start;
    if (gf__robust_init(&h->alloc_lock) != 0) {
        gf__unmap(a);
        return GF_ENOMEM;
    }
    /* release: an attacher that sees the magic sees the initialised header. */
    atomic_store_explicit(GF_A64(&h->magic), GF__ARENA_MAGIC, memory_order_release);
    err = gf__attach_process(a);
    if (err) {
        gf__unmap(a);
        return err;
    }
    *out = a;
    return 0;
}

/* Attach to the arena behind `fd` (duplicated). Result 0 and *out. Fails: GF_EBADF,
 * GF_EINVAL (not an arena / other version), GF_ENOMEM, GF_EMFILE, GF_EAGAIN (table full). */
int gf_arena_attach(int fd, gf_arena **out) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) return GF_EBADF;
    if (!S_ISREG(st.st_mode) || (size_t)st.st_size < sizeof(gf__arena_hdr)) return GF_EINVAL;
    int fd2 = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (fd2 < 0) return gf__errno_code(errno);
    gf_arena *a = NULL;
    int err = gf__map(fd2, (size_t)st.st_size, &a);
    if (err) {
        close(fd2);
        return err;
    }
    gf__arena_hdr *h = a->h;
    /* acquire: pairs with the release-store of the magic in gf_arena_create. */
    if (atomic_load_explicit(GF_A64(&h->magic), memory_order_acquire) != GF__ARENA_MAGIC ||
        h->version != GF__ARENA_VERSION || h->reserve != (uint64_t)st.st_size ||
        h->max_procs != GF_ARENA_MAX_PROCS || h->data_start < sizeof(gf__arena_hdr) ||
        h->data_start >= h->reserve) {
        gf__unmap(a);
        return GF_EINVAL;
    }
    err = gf__attach_process(a);
    if (err) {
        gf__unmap(a);
        return err;
    }
    *out = a;
    return 0;
}

/* In a forked child: take a slot of its own (the parent keeps its slot, whose life lock the
 * child does not hold: glibc empties a forked child's robust list). Result 0. Fails:
 * GF_EAGAIN (table full), GF_ENOMEM. */
int gf_arena_after_fork_child(gf_arena *a) {
    if (a->slot < GF_ARENA_MAX_PROCS && a->pid == getpid()) return 0; /* attached already */
    a->slot = GF_ARENA_MAX_PROCS;
    a->ident = 0;
    a->pid = 0;
    a->has_holder = 0; /* the parent's holder thread does not exist here */
    int err = gf__attach_process(a);
    if (!err) gf__tc_attached(a);
    return err;
}


/* Give the slot back, unmap and close. In a forked child that never called
 * gf_arena_after_fork_child, the slot is the parent's and is left alone. */
void gf_arena_detach(gf_arena *a) {
    if (!a) return;
    gf__tc_detach(a); /* every thread's cached blocks go back to the free lists */
    if (a->slot < GF_ARENA_MAX_PROCS && a->pid == getpid())
        gf__slot_release(a, a->slot); /* blocks still in the ledger */
    if (a->slot < GF_ARENA_MAX_PROCS && a->pid == getpid() && a->has_holder) {
        /* release: pairs with the holder's acquire load. */
        atomic_store_explicit(GF_A32(&a->hold_state), 3u, memory_order_release);
        gf__futex_wake(&a->hold_state, INT32_MAX);
        pthread_join(a->holder, NULL);
    } else if (a->slot < GF_ARENA_MAX_PROCS && a->pid == getpid()) {
        gf__slot *s = &a->h->slots[a->slot];
        s->state = GF__SLOT_FREE;
        /* The unlock must happen before munmap: the mutex is on this thread's robust list. */
        pthread_mutex_unlock(&s->life);
    }
    gf__unmap(a);
}

int gf_arena_fd(const gf_arena *a) { return a->fd; }
size_t gf_arena_size(const gf_arena *a) { return a->size; }
void *gf_arena_base(const gf_arena *a) { return a->base; }
uint32_t gf_arena_slot(const gf_arena *a) { return a->slot; }
