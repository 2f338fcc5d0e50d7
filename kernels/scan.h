/* Set scans for the engine's data caches (included by kernels/_engine.pyx).
 *
 * Used by the data caches, the TLBs and the PWCs. A cache set is a group of 16-way blocks: 16 32-bit tags (64 bytes, one host cache line) and 16 LRU
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

/* Ask the host to bring the line at `p` into its caches. An asm statement on x86: GCC's dead-code
 * elimination drops __builtin_prefetch calls in the engine's inlined code (checked with GCC 12). */
static inline void prefetch(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("prefetcht0 %0" : : "m"(*(const char*)p));
#else
    __builtin_prefetch(p);
#endif
}

#if defined(__SSE2__)
/* A byte in all 16 lanes (movd + pshufd: cheaper than _mm_set1_epi8 without SSSE3). */
static inline __m128i bytes16(unsigned b) { return _mm_set1_epi32((int)(b * 0x01010101u)); }
#endif

#if defined(__SSE2__)
/* Bit i set when way i of a 16-way block holds `tag`. */
static inline unsigned block_matches(const uint32_t* tags, uint32_t tag) {
    __m128i needle = _mm_set1_epi32((int)tag);
    const __m128i* v = (const __m128i*)tags;
    __m128i e0 = _mm_cmpeq_epi32(_mm_load_si128(v), needle);
    __m128i e1 = _mm_cmpeq_epi32(_mm_load_si128(v + 1), needle);
    __m128i e2 = _mm_cmpeq_epi32(_mm_load_si128(v + 2), needle);
    __m128i e3 = _mm_cmpeq_epi32(_mm_load_si128(v + 3), needle);
    return (unsigned)_mm_movemask_epi8(_mm_packs_epi16(_mm_packs_epi32(e0, e1), _mm_packs_epi32(e2, e3)));
}

/* Sets of one block (up to 16 ways, the common case): every rank below `h` ages by one and `way` becomes
 * the most recent, computed in registers and stored once. */
static inline void block_promote(uint8_t* ranks, __m128i r, int way, unsigned h) {
    const __m128i lanes = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    r = _mm_sub_epi8(r, _mm_cmplt_epi8(r, bytes16(h)));
    r = _mm_andnot_si128(_mm_cmpeq_epi8(lanes, bytes16((unsigned)way)), r);
    _mm_store_si128((__m128i*)ranks, r);
}
#endif

/* Bit i set when way i of a 16-way block has rank `rank`. */
#if defined(__SSE2__)
static inline unsigned block_rank_matches(const uint8_t* ranks, unsigned rank) {
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_load_si128((const __m128i*)ranks), bytes16(rank)));
}
#else
static inline unsigned block_matches(const uint32_t* tags, uint32_t tag) {
    unsigned m = 0;
    for (int i = 0; i < SCAN_BLOCK; i++) m |= (unsigned)(tags[i] == tag) << i;
    return m;
}
static inline unsigned block_rank_matches(const uint8_t* ranks, unsigned rank) {
    unsigned m = 0;
    for (int i = 0; i < SCAN_BLOCK; i++) m |= (unsigned)(ranks[i] == rank) << i;
    return m;
}
#endif

/* First way holding `tag` among n_blocks * 16 ways, or -1. */
static inline int scan_tags(const uint32_t* tags, int n_blocks, uint32_t tag) {
    for (int b = 0; b < n_blocks; b++) {
        unsigned m = block_matches(tags + SCAN_BLOCK * b, tag);
        if (m) return SCAN_BLOCK * b + __builtin_ctz(m);
    }
    return -1;
}

/* Index of the lowest set bit of a non-zero mask. */
static inline int lowest_bit(unsigned m) { return __builtin_ctz(m); }

/* A 64-bit key's 32-bit tag for scan_tags: a multiplicative hash, never 0 (0 marks an invalid way). */
static inline uint32_t key_tag(uint64_t key) {
    uint32_t t = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32);
    return t ? t : 1u;
}

/* The way of a TLB or PWC set holding `key`, or -1: the set's 32-bit tags (key_tag) are compared a block at
 * a time, and a tag match is confirmed against the full key; two keys with one tag (about one lookup in
 * 10^8 for a 12-way set) fall back to comparing every key. */
static inline int find_key(const uint32_t* tags, const uint64_t* keys, int n_blocks, int ways, uint64_t key) {
    int w = scan_tags(tags, n_blocks, key_tag(key));
    if (w < 0) return -1;
    if (keys[w] == key) return w;
    for (int i = 0; i < ways; i++)
        if (keys[i] == key) return i;
    return -1;
}

/* First way whose rank is `rank`, or -1. */
static inline int ranks_find(const uint8_t* ranks, int n_blocks, unsigned rank) {
    for (int b = 0; b < n_blocks; b++) {
        unsigned m = block_rank_matches(ranks + SCAN_BLOCK * b, rank);
        if (m) return SCAN_BLOCK * b + __builtin_ctz(m);
    }
    return -1;
}

/* A hit: `way` becomes the most recent; every way more recent than it ages by one. */
static inline void ranks_touch(uint8_t* ranks, int n_blocks, int way) {
    unsigned h = ranks[way];
#if defined(__SSE2__)
    if (n_blocks == 1) {
        block_promote(ranks, _mm_load_si128((const __m128i*)ranks), way, h);
        return;
    }
#endif
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
#if defined(__SSE2__)
    if (n_blocks == 1) {
        __m128i r = _mm_load_si128((const __m128i*)ranks);
        int w = __builtin_ctz((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(r, bytes16(ways - 1))));
        block_promote(ranks, r, w, ways - 1);
        return w;
    }
#endif
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

/* A data-cache access: on a hit `tag`'s way becomes the most recent; on a miss the tag replaces the least
 * recent way (an invalid one while the set has one) and becomes the most recent. Returns 1 on a hit. */
static inline int set_touch(uint32_t* tags, uint8_t* ranks, int n_blocks, unsigned ways, uint32_t tag) {
#if defined(__SSE2__)
    if (n_blocks == 1) {
        unsigned m = block_matches(tags, tag);
        __m128i r = _mm_load_si128((const __m128i*)ranks);
        int w;
        unsigned h;
        if (m) {
            w = __builtin_ctz(m);
            h = ranks[w];
        } else {
            h = ways - 1;
            w = __builtin_ctz((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(r, bytes16(h))));
            tags[w] = tag;
        }
        block_promote(ranks, r, w, h);
        return m != 0;
    }
#endif
    int w = scan_tags(tags, n_blocks, tag);
    if (w >= 0) {
        ranks_touch(ranks, n_blocks, w);
        return 1;
    }
    tags[ranks_replace(ranks, n_blocks, ways)] = tag;
    return 0;
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
