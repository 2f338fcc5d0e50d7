/* Set scans for the engine's data caches (included by kernels/_engine.pyx).
 *
 * Used by the data caches and the TLBs. A cache set is a group of 16-way blocks: 16 32-bit tags (64 bytes, one host cache line) and 16 LRU
 * rank bytes, 0 = most recent, ways - 1 = least recent. Padding ways hold tag 0 (never a real tag) and
 * rank 127 (never compared as a real rank). On x86-64 a 16-way block is compared with a handful of SSE2
 * instructions; elsewhere plain loops do the same thing.
 */
#ifndef MSHARE_HW_SCAN_H
#define MSHARE_HW_SCAN_H

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>

#endif

#define SCAN_BLOCK 16

#if defined(__SSE2__)
/* A byte in all 16 lanes (movd + pshufd: cheaper than _mm_set1_epi8 without SSSE3). */
static inline __m128i bytes16(unsigned b) { return _mm_set1_epi32((int)(b * 0x01010101u)); }
#endif

/* First way holding `tag` among n_blocks * 16 ways, or -1. */
static inline int scan_tags(const uint32_t* tags, int n_blocks, uint32_t tag) {
#if defined(__SSE2__)
    __m128i needle = _mm_set1_epi32((int)tag);
    for (int b = 0; b < n_blocks; b++) {
        const __m128i* v = (const __m128i*)(tags + SCAN_BLOCK * b);
        __m128i e0 = _mm_cmpeq_epi32(_mm_load_si128(v), needle);
        __m128i e1 = _mm_cmpeq_epi32(_mm_load_si128(v + 1), needle);
        __m128i e2 = _mm_cmpeq_epi32(_mm_load_si128(v + 2), needle);
        __m128i e3 = _mm_cmpeq_epi32(_mm_load_si128(v + 3), needle);
        int m = _mm_movemask_epi8(_mm_packs_epi16(_mm_packs_epi32(e0, e1), _mm_packs_epi32(e2, e3)));
        if (m) return SCAN_BLOCK * b + __builtin_ctz((unsigned)m);
    }
    return -1;
#else
    for (int i = 0; i < n_blocks * SCAN_BLOCK; i++)
        if (tags[i] == tag) return i;
    return -1;

#endif
}

/* First way whose rank is `rank`, or -1. */
static inline int ranks_find(const uint8_t* ranks, int n_blocks, unsigned rank) {
#if defined(__SSE2__)
    __m128i needle = bytes16(rank);
    for (int b = 0; b < n_blocks; b++) {
        int m = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_load_si128((const __m128i*)(ranks + SCAN_BLOCK * b)), needle));
        if (m) return SCAN_BLOCK * b + __builtin_ctz((unsigned)m);
    }
    return -1;
#else
    for (int i = 0; i < n_blocks * SCAN_BLOCK; i++)
        if (ranks[i] == rank) return i;
    return -1;

#endif
}

/* A hit: `way` becomes the most recent; every way more recent than it ages by one. */
static inline void ranks_touch(uint8_t* ranks, int n_blocks, int way) {
    unsigned h = ranks[way];
    if (h == 0) return;
#if defined(__SSE2__)
    __m128i hv = bytes16(h);
    for (int b = 0; b < n_blocks; b++) {
        __m128i* p = (__m128i*)(ranks + SCAN_BLOCK * b);
        __m128i a = _mm_load_si128(p);
        _mm_store_si128(p, _mm_sub_epi8(a, _mm_cmplt_epi8(a, hv))); /* ranks < 128: signed compare is fine */
    }
#else
    for (int i = 0; i < n_blocks * SCAN_BLOCK; i++)
        ranks[i] += ranks[i] < h;

#endif
    ranks[way] = 0;
}

/* A miss: the least recent way (rank ways - 1) takes the new line and becomes the most recent; every
 * other real way ages by one. */
static inline int ranks_replace(uint8_t* ranks, int n_blocks, unsigned ways) {
    int victim = ranks_find(ranks, n_blocks, ways - 1);
#if defined(__SSE2__)
    __m128i limit = bytes16((ways - 1));
    for (int b = 0; b < n_blocks; b++) {
        __m128i* p = (__m128i*)(ranks + SCAN_BLOCK * b);
        __m128i a = _mm_load_si128(p);
        _mm_store_si128(p, _mm_sub_epi8(a, _mm_cmplt_epi8(a, limit)));
    }
#else
    for (int i = 0; i < n_blocks * SCAN_BLOCK; i++)
        ranks[i] += ranks[i] < ways - 1;

#endif
    ranks[victim] = 0;
    return victim;
}

/* An invalidation: `way` becomes the least recent (rank ways - 1); every way less recent than it gets one
 * rank younger. Invalid ways thus always hold the highest ranks, and a fill (ranks_replace) takes one of
 * them while there is one. */
static inline void ranks_drop(uint8_t* ranks, int n_blocks, unsigned ways, int way) {
    unsigned h = ranks[way];
#if defined(__SSE2__)
    __m128i hv = bytes16(h);
    __m128i limit = bytes16(ways);
    for (int b = 0; b < n_blocks; b++) {
        __m128i* p = (__m128i*)(ranks + SCAN_BLOCK * b);
        __m128i a = _mm_load_si128(p);
        __m128i older = _mm_and_si128(_mm_cmpgt_epi8(a, hv), _mm_cmplt_epi8(a, limit)); /* h < rank < ways */
        _mm_store_si128(p, _mm_add_epi8(a, older));
    }
#else
    for (int i = 0; i < n_blocks * SCAN_BLOCK; i++)
        ranks[i] -= ranks[i] > h && ranks[i] < ways;
#endif
    ranks[way] = (uint8_t)(ways - 1);
}

#endif
