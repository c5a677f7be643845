/*
 * fuzz_rng.h -- what the standalone fuzz drivers (fuzz_frame.c, fuzz_sock.c) share: a
 * deterministic xorshift64* generator and their -runs=N / -seed=S arguments.
 */
#ifndef GF_FUZZ_RNG_H
#define GF_FUZZ_RNG_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fz_state = 0x9E3779B97F4A7C15ull;

/* The next pseudo-random 64-bit value (xorshift64*). */
static uint64_t rnd(void) {
    fz_state ^= fz_state >> 12;
    fz_state ^= fz_state << 25;
    fz_state ^= fz_state >> 27;
    return fz_state * 0x2545F4914F6CDD1Dull;
}

/* A pseudo-random value below n (0 for n == 0). */
static uint64_t rndn(uint64_t n) { return n ? rnd() % n : 0; }

/* Parse -runs=N (result; `runs` if absent) and -seed=S (reseeds the generator). */
static long fz_args(int argc, char **argv, long runs) {
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-runs=", 6) == 0) runs = atol(argv[i] + 6);
        else if (strncmp(argv[i], "-seed=", 6) == 0) fz_state = strtoull(argv[i] + 6, NULL, 0) | 1;
    }
    return runs;
}

#endif /* GF_FUZZ_RNG_H */
