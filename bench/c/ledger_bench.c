/*
 * ledger_bench.c -- fixed loops for callgrind instruction counts of the reference ledger's
 * hot paths (bench/callgrind_refs.sh runs each with N and 2N iterations and prints the
 * difference per iteration, so start-up cancels out).
 *
 *   ledger_bench plain|held|hold|dictset|dictins N [others=0]
 *
 *   plain    gf_obj_incref + gf_obj_decref on one object (unrecorded)
 *   held     gf_obj_incref_held + gf_obj_decref_held (recorded in the ledger)
 *   hold     gf_ref_hold + gf_ref_unhold alone
 * (both with `others` other objects' references recorded first: a process holding that many)
 *   dictset  gf_dict_set replacing one of 1000 keys (8-byte keys and values)
 *   dictins  gf_dict_set of a new key, then gf_dict_delete of it
 * `held` and `hold` need the ledger (GF_REF_LEDGER): without it they exit with status 2.
 */
#include "gilfree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: ledger_bench plain|held|hold|dictset|dictins N [others]\n");
        return 1;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    int nothers = argc == 4 ? atoi(argv[3]) : 0;
    gf_arena *a = NULL;
    gf_off o, d;
    if (gf_arena_create((size_t)1 << 30, &a) < 0 || gf_obj_new(a, GF_OBJ_RAW, 64, &o) < 0 ||
        gf_dict_create(a, 0, &d) < 0)
        return 1;
    if (!strcmp(mode, "plain")) {
        for (long i = 0; i < n; i++) {
            gf_obj_incref(a, o);
            gf_obj_decref(a, o);
        }
    } else if (!strcmp(mode, "held") || !strcmp(mode, "hold")) {
#ifdef GF_REF_LEDGER
        for (int k = 0; k < nothers; k++) {
            gf_off other;
            if (gf_obj_new(a, GF_OBJ_RAW, 64, &other) < 0 || gf_ref_hold(a, other) != 1)
                return 1;
        }
        int held = !strcmp(mode, "held");
        for (long i = 0; i < n; i++) {
            if (held) {
                gf_obj_incref_held(a, o);
                gf_obj_decref_held(a, o);
            } else {
                gf_ref_hold(a, o);
                gf_ref_unhold(a, o);
            }
        }
#else
        return 2;
#endif
    } else if (!strcmp(mode, "dictset") || !strcmp(mode, "dictins")) {
        for (uint64_t k = 0; k < 1000; k++)
            if (gf_dict_set(a, d, &k, 8, &k, 8) < 0) return 1;
        int ins = !strcmp(mode, "dictins");
        for (long i = 0; i < n; i++) {
            uint64_t k = ins ? 1000000 + (uint64_t)i : (uint64_t)i % 1000, v = (uint64_t)i;
            if (gf_dict_set(a, d, &k, 8, &v, 8) < 0) return 1;
            if (ins && gf_dict_delete(a, d, &k, 8) < 0) return 1;
        }
    } else {
        return 1;
    }
    gf_arena_detach(a);
    return 0;
}
