/*
 * objarena.c -- huge-page arenas for CPython's small-object allocator while the parent decodes
 * a big map chunk (packed.c): a million result ints are ~32 MB of fresh pymalloc arenas, and
 * on a VM each 4 KiB first-touch fault costs ~2 us -- most of the decoding time. Between
 * gf__objarena_begin() and gf__objarena_end() the arenas pymalloc asks for are cut from 2 MiB
 * aligned regions advised MADV_HUGEPAGE (one fault per 2 MiB where transparent huge pages are
 * on; where they are off nothing changes but the address). Outside that window, and for
 * arenas it did not make, the allocator that was installed before (PyObject_SetArenaAllocator,
 * public API) does the work; an arena made here is given back with munmap, which returns its
 * pages (a partial munmap of a huge page splits it). Everything runs under the GIL, as
 * pymalloc does; free-threaded builds (no pymalloc arenas) skip it. GILFREE_NO_THP=1 turns
 * it off (and the huge-page advice on big result lists, pool.c).
 */
#include "ext.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define OA_HUGE ((size_t)2 << 20)
#define OA_REGION ((size_t)8 << 20) /* reserved at a time (address space; pages on touch) */

static PyObjectArenaAllocator oa_prev;
static int oa_installed, oa_active;
static char *oa_cur;        /* what is left of the current region */
static size_t oa_left;
static uintptr_t *oa_set;   /* open addressing set of the arenas made here (0 = empty) */
static size_t oa_cap, oa_n; /* slots (a power of two), entries */

static size_t oa_slot(uintptr_t p, size_t cap) { return (size_t)((p >> 16) * 0x9E3779B97F4A7C15u) & (cap - 1); }

/* Add p to the set (growing it at half full). Result 0, or -1 (no memory: not added). */
static int oa_set_add(uintptr_t p) {
    if (2 * (oa_n + 1) > oa_cap) {
        size_t nc = oa_cap ? 2 * oa_cap : 256;
        uintptr_t *ns = calloc(nc, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < oa_cap; i++) {
            if (!oa_set[i]) continue;
            size_t j = oa_slot(oa_set[i], nc);
            while (ns[j]) j = (j + 1) & (nc - 1);
            ns[j] = oa_set[i];
        }
        free(oa_set);
        oa_set = ns;
        oa_cap = nc;
    }
    size_t j = oa_slot(p, oa_cap);
    while (oa_set[j]) j = (j + 1) & (oa_cap - 1);
    oa_set[j] = p;
    oa_n++;
    return 0;
}

/* Remove p from the set. Result 1 if it was there. */
static int oa_set_del(uintptr_t p) {
    if (!oa_cap) return 0;
    size_t j = oa_slot(p, oa_cap);
    while (oa_set[j] && oa_set[j] != p) j = (j + 1) & (oa_cap - 1);
    if (!oa_set[j]) return 0;
    oa_set[j] = 0;
    oa_n--;
    /* re-insert the rest of the cluster (linear probing deletion) */
    for (size_t k = (j + 1) & (oa_cap - 1); oa_set[k]; k = (k + 1) & (oa_cap - 1)) {
        uintptr_t q = oa_set[k];
        oa_set[k] = 0;
        size_t m = oa_slot(q, oa_cap);
        while (oa_set[m]) m = (m + 1) & (oa_cap - 1);
        oa_set[m] = q;
    }
    return 1;
}

/* A fresh 2 MiB-aligned region of OA_REGION bytes advised for huge pages. Result 0 or -1. */
static int oa_refill(void) {
    size_t want = OA_REGION + OA_HUGE;
    char *m = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -1;
    char *a = (char *)(((uintptr_t)m + OA_HUGE - 1) & ~(uintptr_t)(OA_HUGE - 1));
    if (a > m) munmap(m, (size_t)(a - m));
    if (a + OA_REGION < m + want) munmap(a + OA_REGION, (size_t)(m + want - (a + OA_REGION)));
    (void)madvise(a, OA_REGION, MADV_HUGEPAGE);
    if (oa_left) munmap(oa_cur, oa_left); /* the old region's unused tail: never touched */
    oa_cur = a;
    oa_left = OA_REGION;
    return 0;
}

static void *oa_alloc(void *ctx, size_t size) {
    (void)ctx;
    if (oa_active && size <= OA_HUGE && size % 4096 == 0) {
        if (oa_left >= size || oa_refill() == 0) {
            char *p = oa_cur;
            if (oa_set_add((uintptr_t)p) == 0) {
                oa_cur += size;
                oa_left -= size;
                return p;
            }
        }
    }
    return oa_prev.alloc(oa_prev.ctx, size);
}

static void oa_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    if (ptr && oa_set_del((uintptr_t)ptr)) {
        munmap(ptr, size);
        return;
    }
    oa_prev.free(oa_prev.ctx, ptr, size);
}

/* See ext.h. */
int gf__no_thp(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("GILFREE_NO_THP");
        v = e && *e && *e != '0';
    }
    return v;
}

/* See ext.h. */
void gf__objarena_begin(void) {
#ifndef Py_GIL_DISABLED
    if (!oa_installed) {
        if (gf__no_thp()) return;
        PyObject_GetArenaAllocator(&oa_prev);
        if (!oa_prev.alloc || !oa_prev.free) return;
        PyObjectArenaAllocator mine = {NULL, oa_alloc, oa_free};
        PyObject_SetArenaAllocator(&mine);
        oa_installed = 1;
    }
    oa_active++;
#endif
}

/* See ext.h. */
void gf__objarena_end(void) {
    if (oa_active > 0) oa_active--;
}
