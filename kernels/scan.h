/* Small word-parallel helpers for the engine's set scans (included by kernels/_engine.pyx).
 *
 * scan_u32: first index of x in v[0..n), n a multiple of 4 (SSE2 on x86-64, a plain loop elsewhere).
 * ages_*:   true-LRU ranks of a set, one byte per way (0 = most recent, ways - 1 = least), eight ways per
 *           64-bit word; padding bytes hold 127 and never change. Ranks stay below 127, so the byte
 *           arithmetic below never carries from one byte into the next.
 */
#ifndef MSHARE_HW_SCAN_H
#define MSHARE_HW_SCAN_H

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define AGES_LOW  0x0101010101010101ULL
#define AGES_HIGH 0x8080808080808080ULL

static inline int scan_u32(const uint32_t* v, int n, uint32_t x) {
#if defined(__SSE2__)
    __m128i needle = _mm_set1_epi32((int)x);
    for (int i = 0; i < n; i += 4) {
        __m128i block = _mm_loadu_si128((const __m128i*)(v + i));
        int m = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(block, needle)));
        if (m) return i + __builtin_ctz((unsigned)m);
    }
    return -1;
#else
    for (int i = 0; i < n; i++)
        if (v[i] == x) return i;
    return -1;
#endif
}

/* The first way whose rank is `rank`. */
static inline int ages_find(const uint8_t* ages, int n_words, unsigned rank) {
    for (int i = 0; i < n_words; i++) {
        uint64_t a;
        memcpy(&a, ages + 8 * i, 8);
        uint64_t y = a ^ (AGES_LOW * rank);
        uint64_t z = (y - AGES_LOW) & ~y & AGES_HIGH; /* lowest set bit marks the first zero byte */
        if (z) return 8 * i + (__builtin_ctzll(z) >> 3);
    }
    return -1;
}

/* Make `way` the most recent: every way more recent than it ages by one. */
static inline void ages_touch(uint8_t* ages, int n_words, int way) {
    unsigned h = ages[way];
    if (h == 0) return;
    uint64_t below = AGES_LOW * (h - 1);
    for (int i = 0; i < n_words; i++) {
        uint64_t a;
        memcpy(&a, ages + 8 * i, 8);
        a += (((below | AGES_HIGH) - a) & AGES_HIGH) >> 7; /* +1 in every byte whose rank is < h */
        memcpy(ages + 8 * i, &a, 8);
    }
    ages[way] = 0;
}

#endif
