/* CPU kernels of the tenfold engine (an optional C extension; the engine falls back to PyTorch ops
 * when it is not built).
 *
 * Owns: (1) paged decode attention (float32 math over a float32 or bfloat16 cache): every decode row's query heads attend over that sequence's
 * KV blocks read in place from the paged cache (no gathered copy), grouped-query heads sharing each key
 * and value row, two passes (scores, then the weighted sum of values), split over threads by row;
 * context lengths and block ids are checked before any read; (2) the batched LoRA delta of row segments
 * (decode rows grouped by adapter slot, prefill chunks cut into pieces of at most 16 rows) read in place
 * from the slot stacks, register-blocked; rows and slots are checked before any read; (3) the base linears,
 * y = x W^T (+ b) with W packed once into 32-column blocks (`layers.Linear`), in register tiles, with an
 * AVX-512, an AVX2 and a portable path picked at import. Does not own:
 * shape, dtype and layout checks (the Python callers in `layers.py` and `lora_stacks.py`), prefill
 * attention (PyTorch's SDPA).
 *
 * No PyTorch headers: tensors arrive as data pointers plus sizes, so this builds with any C compiler with
 * OpenMP in about a second. The GIL is released while it runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 11
#define TF_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TF_CLONES
#endif

/* VW floats as one GCC/Clang vector: the compiler lowers it to whatever registers each clone has (one zmm,
 * two ymm, four xmm). The hot loops are written with vector types rather than left to the auto-vectorizer,
 * whose cost model (it depends on -mtune) made the 16-bit conversions 3x slower and gave short runtime-
 * length loops (a 64-wide head) a prologue and epilogue each. */
#define VW 16
typedef float vf __attribute__((vector_size(4 * VW)));
typedef float vf8 __attribute__((vector_size(4 * VW / 2)));
typedef uint32_t vu __attribute__((vector_size(4 * VW)));
typedef int32_t vi __attribute__((vector_size(4 * VW)));
typedef uint16_t vh __attribute__((vector_size(2 * VW)));

static inline __attribute__((always_inline)) vf ldf(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) void stf(float *p, vf v) { memcpy(p, &v, sizeof v); }

static inline __attribute__((always_inline)) float hsum(vf v) {
    vf8 lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    lo += hi;
    float t[VW / 2];
    memcpy(t, &lo, sizeof t);
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}


/* The element kinds of 16-bit-capable arrays (LoRA stacks; the KV cache: float32 or bfloat16). */
enum { W_F32 = 0, W_F16 = 1, W_BF16 = 2 };

/* Element i of a weight array of kind `kind`, as float32 (exact for all three kinds): the scalar edge of
 * the vector loads below, same arithmetic. */
static inline __attribute__((always_inline)) float ldw(const void *w, int64_t i, const int kind) {
    if (kind == W_F32) return ((const float *)w)[i];
    const uint32_t h = ((const uint16_t *)w)[i];
    uint32_t u;
    float f;
    if (kind == W_BF16) { /* bfloat16 is the high half of a float32 */
        u = h << 16;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    /* IEEE half, finite: sign to bit 31, exponent and mantissa to bits 27..13, then one multiply by 2^112
     * rebiases the exponent (subnormal halves come out normalised). */
    u = ((h & 0x8000u) << 16) | ((h & 0x7fffu) << 13);
    memcpy(&f, &u, sizeof f);
    return f * 5.192296858534828e+33f; /* 2^112 */
}


/* Elements i .. i + VW - 1 of a weight array, as float32 (unaligned loads). */
static inline __attribute__((always_inline)) vf ldv(const void *w, int64_t i, const int kind) {
    vf f;
    if (kind == W_F32) {
        memcpy(&f, (const float *)w + i, sizeof f);
        return f;
    }
    vh h;
    memcpy(&h, (const uint16_t *)w + i, sizeof h);
    if (kind == W_BF16) return (vf)(__builtin_convertvector(h, vu) << 16);
    /* IEEE half, finite (the stacks never hold Inf or NaN: `LoraStacks.write` refuses them): sign-extended,
     * shifted so that the sign lands on bit 31 and exponent and mantissa on bits 27..13, the copies of the
     * sign in bits 30..28 cleared, then the exponent rebiased by multiplying by 2^112. */
    typedef int16_t vs __attribute__((vector_size(2 * VW)));
    const vi s = __builtin_convertvector((vs)h, vi);
    return (vf)((s << 13) & (int32_t)0x8fffe000) * 5.192296858534828e+33f;
}


typedef struct {
    float *out;
    const float *q;
    const void *k, *v; /* float32 or bfloat16 (kv_kind) */
    const int64_t *tables, *lens;
    int64_t num_blocks, heads, kv_heads, head_dim, block_size, width;
    float scale;
    int64_t begin, end; /* rows [begin, end) */
    int kv_kind;
    int failed;
} decode_job;

/* exp(x) for x <= 0 (softmax after subtracting the max): Cody-Waite range reduction and the Cephes
 * polynomial, about 2 ulp; written so that compilers vectorize it. */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = (float)(int32_t)(x * 1.44269504088896341f - 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_n;
    two_n.i = ((int32_t)n + 127) << 23;
    return p * two_n.f;
}

static inline __attribute__((always_inline)) void decode_rows(decode_job *job, const int kind) {
    const int64_t H = job->heads, KVH = job->kv_heads, hd = job->head_dim, bs = job->block_size;
    const int64_t G = H / KVH, max_len = job->width * bs, token_stride = KVH * hd;
    float *scores = (float *)malloc((size_t)(H * max_len + H) * sizeof(float)), *invs = scores + H * max_len;
    if (!scores) {
        job->failed = 1;
        return;
    }
    /* One task per row: each token's keys (then values) of all KV heads are one contiguous run, and a
     * block is block_size such runs back to back, so the cache is read front to back. */
    for (int64_t row = job->begin; row < job->end; row++) {
        const int64_t len = job->lens[row];
        const int64_t *table = job->tables + row * job->width;
        int bad = len < 1 || len > max_len;
        for (int64_t b = 0; !bad && b < (len + bs - 1) / bs; b++) bad = table[b] < 0 || table[b] >= job->num_blocks;
        if (bad) { /* never read outside the cache */
            job->failed = 2;
            break;
        }
        const float *q = job->q + row * H * hd;
        float *out = job->out + row * H * hd;
        const int64_t nblk = (len + bs - 1) / bs;
        /* Blocks, then tokens within a block, then KV heads, then the query heads sharing each key row. */
        for (int64_t bi = 0; bi < nblk; bi++) {
            if (bi + 1 < nblk)
                __builtin_prefetch((const char *)job->k + table[bi + 1] * bs * token_stride * (kind == W_F32 ? 4 : 2));
            const int64_t t0 = bi * bs, jn = len - t0 < bs ? len - t0 : bs;
            for (int64_t j = 0; j < jn; j++) {
                const int64_t k = (table[bi] * bs + j) * token_stride; /* element offset of this token's keys */
                for (int64_t g = 0; g < KVH; g++) {
                    const int64_t kh = k + g * hd;
                    for (int64_t h = g * G; h < (g + 1) * G; h++) {
                        const float *qh = q + h * hd;
                        float dot;
                        if (hd % VW == 0) { /* head_dim 64, 128, ...: whole vectors, one horizontal sum */
                            vf acc = ldf(qh) * ldv(job->k, kh, kind);
                            for (int64_t i = VW; i < hd; i += VW) acc += ldf(qh + i) * ldv(job->k, kh + i, kind);
                            dot = hsum(acc);
                        } else {
                            dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                            for (int64_t i = 0; i < hd; i++) dot += qh[i] * ldw(job->k, kh + i, kind);
                        }
                        scores[h * max_len + t0 + j] = dot * job->scale;
                    }
                }
            }
        }
        for (int64_t h = 0; h < H; h++) {
            float *s = scores + h * max_len;
            float m = s[0];
            int64_t t = 0;
            if (len >= VW) { /* the maximum over whole vectors, then the rest */
                vf mv = ldf(s);
                for (t = VW; t + VW <= len; t += VW) {
                    const vf x = ldf(s + t);
                    const vi gt = x > mv; /* all-ones lanes where x is larger */
                    mv = (vf)(((vi)x & gt) | ((vi)mv & ~gt));
                }
                float lanes[VW];
                memcpy(lanes, &mv, sizeof lanes);
                for (int i = 0; i < VW; i++) m = lanes[i] > m ? lanes[i] : m;
            }
            for (; t < len; t++) m = s[t] > m ? s[t] : m;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t u = 0; u < len; u++) {
                s[u] = exp_nonpositive(s[u] - m);
                sum += s[u];
            }
            invs[h] = 1.0f / sum;
            if (hd % (4 * VW) == 0) continue; /* the weighted sum below scales once, at the end */
            const float inv = invs[h];
#pragma omp simd
            for (int64_t u = 0; u < len; u++) s[u] *= inv;
        }
        if (hd % (4 * VW) == 0) {
            /* Per head and 64-wide slice of it, the weighted sum of values in four vector registers over all
             * tokens (V of one sequence stays in L2 for the heads sharing it): no output row stored and
             * reloaded per token, which made this pass take about twice the rest of the kernel. */
            for (int64_t h = 0; h < H; h++) {
                const float *ps = scores + h * max_len;
                const int64_t voff = (h / G) * hd;
                for (int64_t d0 = 0; d0 < hd; d0 += 4 * VW) {
                    vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                    for (int64_t bi = 0; bi < nblk; bi++) {
                        const int64_t t0 = bi * bs, jn = len - t0 < bs ? len - t0 : bs;
                        const int64_t vb = table[bi] * bs * token_stride + voff + d0;
                        for (int64_t j = 0; j < jn; j++) {
                            const float p = ps[t0 + j];
                            const int64_t vh = vb + j * token_stride;
                            a0 += p * ldv(job->v, vh, kind);
                            a1 += p * ldv(job->v, vh + VW, kind);
                            a2 += p * ldv(job->v, vh + 2 * VW, kind);
                            a3 += p * ldv(job->v, vh + 3 * VW, kind);
                        }
                    }
                    float *o = out + h * hd + d0;
                    const float inv = invs[h];
                    stf(o, a0 * inv);
                    stf(o + VW, a1 * inv);
                    stf(o + 2 * VW, a2 * inv);
                    stf(o + 3 * VW, a3 * inv);
                }
            }
            continue;
        }
        memset(out, 0, (size_t)(H * hd) * sizeof(float));
        for (int64_t bi = 0; bi < nblk; bi++) {
            if (bi + 1 < nblk)
                __builtin_prefetch((const char *)job->v + table[bi + 1] * bs * token_stride * (kind == W_F32 ? 4 : 2));
            const int64_t t0 = bi * bs, jn = len - t0 < bs ? len - t0 : bs;
            for (int64_t j = 0; j < jn; j++) {
                const int64_t v = (table[bi] * bs + j) * token_stride;
                for (int64_t g = 0; g < KVH; g++) {
                    const int64_t vh = v + g * hd;
                    for (int64_t h = g * G; h < (g + 1) * G; h++) {
                        const float p = scores[h * max_len + t0 + j];
                        float *o = out + h * hd;
                        if (hd % VW == 0) {
                            for (int64_t i = 0; i < hd; i += VW) stf(o + i, ldf(o + i) + p * ldv(job->v, vh + i, kind));
                        } else {
#pragma omp simd
                            for (int64_t i = 0; i < hd; i++) o[i] += p * ldw(job->v, vh + i, kind);
                        }
                    }
                }
            }
        }
    }
    free(scores);
}

TF_CLONES static void decode_tasks_f32(decode_job *job) { decode_rows(job, W_F32); }
TF_CLONES static void decode_tasks_bf16(decode_job *job) { decode_rows(job, W_BF16); }

/* paged_decode_attention(out, q, k_cache, v_cache, tables, lens, rows, num_blocks, heads, kv_heads,
 *                        head_dim, block_size, width, scale, threads[, kv_kind])
 * Pointers are data pointers of contiguous tensors: out and q [rows, heads, head_dim] float32; caches
 * [blocks, block_size, kv_heads, head_dim] float32 or, with kv_kind 2, bfloat16 (scores and sums in float32); tables [rows, width] int64; lens [rows] int64.
 * Threads come from the OpenMP runtime PyTorch has loaded (same soname, so one thread pool): a separate
 * pool would fight PyTorch's spinning workers for the cores. */
static PyObject *paged_decode_attention(PyObject *self, PyObject *args) {
    unsigned long long out, q, k, v, tables, lens;
    long long rows, num_blocks, heads, kv_heads, head_dim, block_size, width, threads;
    float scale;
    int kv_kind = W_F32;
    if (!PyArg_ParseTuple(args, "KKKKKKLLLLLLLfL|i", &out, &q, &k, &v, &tables, &lens, &rows, &num_blocks, &heads,
                          &kv_heads, &head_dim, &block_size, &width, &scale, &threads, &kv_kind))
        return NULL;
    if (kv_kind != W_F32 && kv_kind != W_BF16) {
        PyErr_SetString(PyExc_ValueError, "paged_decode_attention: the cache's kind must be 0 (float32) or 2 (bfloat16)");
        return NULL;
    }
    if (rows < 0 || heads <= 0 || kv_heads <= 0 || heads % kv_heads || head_dim <= 0 || block_size <= 0 || width <= 0) {
        PyErr_SetString(PyExc_ValueError, "paged_decode_attention: bad sizes");
        return NULL;
    }
    int n = threads < 1 ? 1 : (threads > rows ? (int)(rows > 0 ? rows : 1) : (int)threads);
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(n) reduction(| : failed)
    {
        int nt = 1, tid = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        tid = omp_get_thread_num();
#endif
        decode_job job = {
            .out = (float *)(uintptr_t)out, .q = (const float *)(uintptr_t)q, .k = (const void *)(uintptr_t)k,
            .v = (const void *)(uintptr_t)v, .kv_kind = kv_kind, .tables = (const int64_t *)(uintptr_t)tables,
            .lens = (const int64_t *)(uintptr_t)lens, .num_blocks = num_blocks, .heads = heads, .kv_heads = kv_heads, .head_dim = head_dim,
            .block_size = block_size, .width = width, .scale = scale,
            .begin = rows * tid / nt, .end = rows * (tid + 1) / nt, .failed = 0,
        };
        if (kv_kind == W_BF16)
            decode_tasks_bf16(&job);
        else
            decode_tasks_f32(&job);
        failed |= job.failed;
    }
    Py_END_ALLOW_THREADS
    if (failed & 2) {
        PyErr_SetString(PyExc_ValueError, "paged_decode_attention: a context length or block id is out of range");
        return NULL;
    }
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* ---- batched LoRA for row segments ------------------------------------------------------------------
 * y[rows of a segment, off_i : off_i + out_i] += (x[rows] @ A[slot])[:, i*R : (i+1)*R] @ B_i[slot] for each
 * module i of a fused group, every segment (at most LORA_MAX_ROWS rows; callers split longer ones) with its
 * own slot. Each segment's A and B are read in place from the slot stacks (no gathered or zero-padded
 * copies), so a decode step over many adapters costs what reading their weights costs. Both products go
 * through one register-blocked routine (`acc_gemm`): a tile of up to LORA_TR rows x LORA_TC (or, where the
 * output is wide enough, 2 x LORA_TC) columns of the output is held in registers while the inner dimension
 * streams past, so each weight row is loaded once per tile and every load feeds LORA_TR fused
 * multiply-adds (two-vector tiles: a 448-row prefill share takes a third less time than with one). Rank-16 products are far from what MKL's
 * GEMM is tuned for (K = 16, or N = 16..48): a 512-token prefill step's delta takes about a quarter less
 * time this way than as matmuls (bench/RESULTS.md, 2026-12-03).
 *
 * The stacks hold float32, float16 or bfloat16 (the engine's `lora_dtype`); x, y and the rank-sized
 * intermediate are float32 and every product accumulates in float32, so a 16-bit stack only rounds the
 * stored weights. Decode reads every resident adapter's weights once per step and is bound by memory
 * bandwidth, so 16-bit stacks halve its cost. The weight kind is a compile-time constant of each
 * instantiation (`lora_segment_f32` ...): after inlining, a load is one load plus one conversion. */
#define LORA_MAX_ROWS 16
#define LORA_MAX_MODS 3
#define LORA_TR 4
#define LORA_TC VW
#ifndef LORA_TILE_REST_K
#define LORA_TILE_REST_K 64
#endif


typedef struct {
    float *y;
    const float *x;
    const void *a;
    const void *b[LORA_MAX_MODS];
    const int64_t *segs;
    int64_t y_stride, x_stride, in_dim, a_cols, rank, mods;
    int64_t out[LORA_MAX_MODS], off[LORA_MAX_MODS];
} lora_job;

/* d[r, c] += sum_k xs[r * xst + k] * w[w0 + k * wst + c] for r < NR (<= LORA_TR), c < nc (<= LORA_TC).
 * Inlined with a constant NR and kind, and nc == LORA_TC in all but edge tiles: the accumulators live in
 * registers and each weight row is loaded and converted once per tile. Fewer rows than a full tile (a
 * decode row over a long K) keep P partial sums over k, so independent multiply-adds hide each other's
 * latency. */
static inline __attribute__((always_inline)) void acc_tile(float *d, int64_t dst, const float *xs, int64_t xst,
                                                           const void *w, int64_t w0, int64_t wst, int64_t K,
                                                           const int NR, const int64_t nc, const int kind) {
    if (nc == LORA_TC) {
        enum { P = 4 };
        const int parts = NR < LORA_TR ? P : 1;
        vf acc[P][LORA_TR];
        for (int r = 0; r < NR; r++) {
            acc[0][r] = ldf(d + r * dst);
            for (int p = 1; p < P; p++) acc[p][r] = (vf){0};
        }
        int64_t k = 0;
        for (; k + parts <= K; k += parts)
            for (int p = 0; p < parts; p++) {
                const vf wv = ldv(w, w0 + (k + p) * wst, kind);
                for (int r = 0; r < NR; r++) acc[p][r] += xs[r * xst + k + p] * wv;
            }
        for (; k < K; k++) {
            const vf wv = ldv(w, w0 + k * wst, kind);
            for (int r = 0; r < NR; r++) acc[0][r] += xs[r * xst + k] * wv;
        }
        for (int r = 0; r < NR; r++)
            stf(d + r * dst, parts == 1 ? acc[0][r] : (acc[0][r] + acc[1][r]) + (acc[2][r] + acc[3][r]));
        return;
    }
    float acc[LORA_TR][LORA_TC];
    for (int r = 0; r < NR; r++)
        for (int64_t c = 0; c < nc; c++) acc[r][c] = d[r * dst + c];
    for (int64_t k = 0; k < K; k++)
        for (int r = 0; r < NR; r++) {
            const float xv = xs[r * xst + k];
            for (int64_t c = 0; c < nc; c++) acc[r][c] += xv * ldw(w, w0 + k * wst + c, kind);
        }
    for (int r = 0; r < NR; r++)
        for (int64_t c = 0; c < nc; c++) d[r * dst + c] = acc[r][c];
}

/* acc_tile for a full LORA_TR x (2 * LORA_TC) tile: twice the columns per row loaded from x. */
static inline __attribute__((always_inline)) void acc_tile2(float *d, int64_t dst, const float *xs, int64_t xst,
                                                            const void *w, int64_t w0, int64_t wst, int64_t K,
                                                            const int kind) {
    vf a[LORA_TR], b[LORA_TR];
    for (int r = 0; r < LORA_TR; r++) {
        a[r] = ldf(d + r * dst);
        b[r] = ldf(d + r * dst + LORA_TC);
    }
    for (int64_t k = 0; k < K; k++) {
        const vf wa = ldv(w, w0 + k * wst, kind), wb = ldv(w, w0 + k * wst + LORA_TC, kind);
        for (int r = 0; r < LORA_TR; r++) {
            const float xv = xs[r * xst + k];
            a[r] += xv * wa;
            b[r] += xv * wb;
        }
    }
    for (int r = 0; r < LORA_TR; r++) {
        stf(d + r * dst, a[r]);
        stf(d + r * dst + LORA_TC, b[r]);
    }
}

/* d[0, c] += sum_k xs[k] * w[w0 + k * wst + c] for c < NV * LORA_TC: one row (a decode row) over a long inner
 * dimension, NV vectors wide, so that each weight row is read once, front to back. (With tiles one vector
 * wide, a fused shrink matrix [in, modules * rank] was read in modules passes, each taking one 64-byte piece
 * of every row: q/k/v's 48 columns ran at 17 GB/s where o's 16 ran at 28; a decode step's delta over 64
 * adapters went from 68 to 59 ms in float32 and from 30 to 22 ms in bfloat16.) Fewer than four vectors
 * keep partial sums over k, so that at least four independent multiply-add chains are in flight: with one
 * chain per vector the one- and two-vector strips ran at half the speed of memory. */
static inline __attribute__((always_inline)) void acc_strip(float *d, const float *xs, const void *w, int64_t w0,
                                                            int64_t wst, int64_t K, const int NV, const int kind) {
    enum { PMAX = 4 };
    const int P = NV >= 4 ? 1 : NV >= 2 ? 2 : 4;
    vf acc[PMAX][4];
    for (int v = 0; v < NV; v++) {
        acc[0][v] = ldf(d + v * LORA_TC);
        for (int p = 1; p < P; p++) acc[p][v] = (vf){0};
    }
    int64_t k = 0;
    for (; k + P <= K; k += P)
        for (int p = 0; p < P; p++) {
            const float xv = xs[k + p];
            for (int v = 0; v < NV; v++) acc[p][v] += xv * ldv(w, w0 + (k + p) * wst + v * LORA_TC, kind);
        }
    for (; k < K; k++)
        for (int v = 0; v < NV; v++) acc[0][v] += xs[k] * ldv(w, w0 + k * wst + v * LORA_TC, kind);
    for (int v = 0; v < NV; v++) {
        for (int p = 1; p < P; p++) acc[0][v] += acc[p][v];
        stf(d + v * LORA_TC, acc[0][v]);
    }
}

/* d[n, cols] += xs[n, K] @ w[w0 + (K, cols)] (row strides dst, xst, wst; w0 an element offset into w): full
 * groups of LORA_TR rows in register tiles, and with a long inner dimension (the shrink product, K =
 * in_dim) the last rows too: a lone last row (a decode row) in strips up to four vectors wide when the
 * output has two or more, else in a one-row tile. Otherwise (the expand product, K = rank) the last rows
 * (fewer than LORA_TR) stream each weight row once, in order, into their output rows (held in L1), which
 * is what a memory-bound single row wants. */
static inline __attribute__((always_inline)) void acc_gemm(float *d, int64_t dst, const float *xs, int64_t xst,
                                                           const void *w, int64_t w0, int64_t wst, int64_t n,
                                                           int64_t K, int64_t cols, const int kind) {
    const int64_t rest = n % LORA_TR, full = n - rest;
    int64_t tiled = K >= LORA_TILE_REST_K ? n : full;
    if (rest == 1 && tiled == n && cols >= 2 * LORA_TC) { /* one row left (a decode row): strips up to 4 vectors wide */
        float *dr = d + full * dst;
        const float *xr = xs + full * xst;
        int64_t c0 = 0;
        for (; c0 + 4 * LORA_TC <= cols; c0 += 4 * LORA_TC) acc_strip(dr + c0, xr, w, w0 + c0, wst, K, 4, kind);
        const int64_t nv = (cols - c0) / LORA_TC;
        if (nv == 3) acc_strip(dr + c0, xr, w, w0 + c0, wst, K, 3, kind);
        else if (nv == 2) acc_strip(dr + c0, xr, w, w0 + c0, wst, K, 2, kind);
        else if (nv == 1) acc_strip(dr + c0, xr, w, w0 + c0, wst, K, 1, kind);
        c0 += nv * LORA_TC;
        if (c0 < cols) acc_tile(dr + c0, dst, xr, xst, w, w0 + c0, wst, K, 1, cols - c0, kind);
        n = tiled = full; /* that row is done */
    }
    /* Row groups outer, column tiles inner: a group's output rows are read and written front to back. (With
     * columns outer, a 16-row prefill piece's expand product walked its 16 output rows 128 bytes at a time,
     * which ran at half speed when the base matmul had just left those rows in memory rather than cache.) */
    for (int64_t r0 = 0; r0 < full; r0 += LORA_TR) {
        float *dr = d + r0 * dst;
        const float *xr = xs + r0 * xst;
        int64_t c0 = 0;
        for (; c0 + 2 * LORA_TC <= cols; c0 += 2 * LORA_TC) /* two vectors wide: each x load feeds 2 FMAs */
            acc_tile2(dr + c0, dst, xr, xst, w, w0 + c0, wst, K, kind);
        for (; c0 < cols; c0 += LORA_TC)
            acc_tile(dr + c0, dst, xr, xst, w, w0 + c0, wst, K, LORA_TR, cols - c0 < LORA_TC ? cols - c0 : LORA_TC, kind);
    }
    if (tiled > full) { /* the last rows over a long inner dimension */
        float *dr = d + full * dst;
        const float *xr = xs + full * xst;
        for (int64_t c0 = 0; c0 < cols; c0 += LORA_TC) {
            const int64_t nc = cols - c0 < LORA_TC ? cols - c0 : LORA_TC;
            if (rest == 1) acc_tile(dr + c0, dst, xr, xst, w, w0 + c0, wst, K, 1, nc, kind);
            else if (rest == 2) acc_tile(dr + c0, dst, xr, xst, w, w0 + c0, wst, K, 2, nc, kind);
            else acc_tile(dr + c0, dst, xr, xst, w, w0 + c0, wst, K, 3, nc, kind);
        }
    }
    const int64_t vec_cols = cols - cols % LORA_TC;
    for (int64_t k = 0; k < K && tiled < n; k++) {
        const int64_t wr = w0 + k * wst;
        for (int64_t r = tiled; r < n; r++) {
            const float xv = xs[r * xst + k];
            float *dr = d + r * dst;
            for (int64_t c = 0; c < vec_cols; c += LORA_TC) stf(dr + c, ldf(dr + c) + xv * ldv(w, wr + c, kind));
            for (int64_t c = vec_cols; c < cols; c++) dr[c] += xv * ldw(w, wr + c, kind);
        }
    }
}

static inline __attribute__((always_inline)) void lora_segment(const lora_job *job, int64_t seg, float *h,
                                                               const int kind) {
    const int64_t start = job->segs[3 * seg], n = job->segs[3 * seg + 1], slot = job->segs[3 * seg + 2];
    const int64_t in = job->in_dim, ac = job->a_cols, R = job->rank;
    memset(h, 0, (size_t)(n * ac) * sizeof(float));
    acc_gemm(h, ac, job->x + start * job->x_stride, job->x_stride, job->a, slot * in * ac, ac, n, in, ac, kind);
    for (int64_t i = 0; i < job->mods; i++)
        acc_gemm(job->y + start * job->y_stride + job->off[i], job->y_stride, h + i * R, ac, job->b[i],
                 slot * R * job->out[i], job->out[i], n, R, job->out[i], kind);
}

TF_CLONES static void lora_segment_f32(const lora_job *job, int64_t seg, float *h) { lora_segment(job, seg, h, W_F32); }
TF_CLONES static void lora_segment_f16(const lora_job *job, int64_t seg, float *h) { lora_segment(job, seg, h, W_F16); }
TF_CLONES static void lora_segment_bf16(const lora_job *job, int64_t seg, float *h) { lora_segment(job, seg, h, W_BF16); }

/* lora_segments(y, y_stride, x, x_stride, rows_total, in_dim, segs, nsegs, a_stack, capacity, a_cols, rank,
 *               (b_stack, out, off) * mods ..., threads, kind)
 * y [rows_total, *] and x [rows_total, in_dim] float32 with the given row strides (unit column stride);
 * segs int64 [nsegs, 3] = (start row, rows <= 16, slot); a_stack [capacity, in_dim, a_cols]; each
 * b_stack [capacity, rank, out]; a_cols = mods * rank; the stacks' element kind: 0 float32, 1 float16,
 * 2 bfloat16. */
static PyObject *lora_segments(PyObject *self, PyObject *args) {
    unsigned long long y, x, segs, a, b[LORA_MAX_MODS] = {0};
    long long y_stride, x_stride, rows_total, in_dim, nsegs, capacity, a_cols, rank, threads;
    long long out[LORA_MAX_MODS] = {0}, off[LORA_MAX_MODS] = {0};
    int kind = W_F32;
    PyObject *mods;
    if (!PyArg_ParseTuple(args, "KLKLLLKLKLLLO!L|i", &y, &y_stride, &x, &x_stride, &rows_total, &in_dim, &segs,
                          &nsegs, &a, &capacity, &a_cols, &rank, &PyTuple_Type, &mods, &threads, &kind))
        return NULL;
    const Py_ssize_t nmods = PyTuple_GET_SIZE(mods);
    if (nmods < 1 || nmods > LORA_MAX_MODS || rank < 1 || a_cols != nmods * rank || in_dim < 1 || nsegs < 0) {
        PyErr_SetString(PyExc_ValueError, "lora_segments: bad sizes");
        return NULL;
    }
    if (kind != W_F32 && kind != W_F16 && kind != W_BF16) {
        PyErr_SetString(PyExc_ValueError, "lora_segments: the stacks' kind must be 0 (float32), 1 (float16) or 2 (bfloat16)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nmods; i++) {
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(mods, i), "KLL", &b[i], &out[i], &off[i])) return NULL;
        if (out[i] < 1 || off[i] < 0 || off[i] + out[i] > y_stride) {
            PyErr_SetString(PyExc_ValueError, "lora_segments: a module's output columns fall outside y");
            return NULL;
        }
    }
    const int64_t *sg = (const int64_t *)(uintptr_t)segs;
    for (long long i = 0; i < nsegs; i++) { /* never touch rows or slots that are not there */
        if (sg[3 * i] < 0 || sg[3 * i + 1] < 1 || sg[3 * i + 1] > LORA_MAX_ROWS || sg[3 * i] + sg[3 * i + 1] > rows_total
            || sg[3 * i + 2] < 0 || sg[3 * i + 2] >= capacity) {
            PyErr_SetString(PyExc_ValueError, "lora_segments: a segment's rows or slot are out of range");
            return NULL;
        }
    }
    lora_job job = {.y = (float *)(uintptr_t)y, .x = (const float *)(uintptr_t)x, .a = (const void *)(uintptr_t)a,
                    .segs = sg, .y_stride = y_stride, .x_stride = x_stride, .in_dim = in_dim, .a_cols = a_cols,
                    .rank = rank, .mods = nmods};
    for (Py_ssize_t i = 0; i < nmods; i++) {
        job.b[i] = (const void *)(uintptr_t)b[i];
        job.out[i] = out[i];
        job.off[i] = off[i];
    }
    void (*segment)(const lora_job *, int64_t, float *) =
        kind == W_F16 ? lora_segment_f16 : kind == W_BF16 ? lora_segment_bf16 : lora_segment_f32;
    int n = threads < 1 ? 1 : (threads > nsegs ? (int)(nsegs > 0 ? nsegs : 1) : (int)threads);
    /* The leading segments of fewer than LORA_TR rows (decode rows, which the runner puts first) are bound
     * by memory: each thread takes one contiguous share of them, so it streams consecutive slots front to
     * back (dealing them out one by one made a decode step's delta ~20 % slower). The rest (prefill pieces,
     * bound by compute) are dealt out one at a time to whichever thread is free, so a thread whose share of
     * decode rows ended early does not wait for the other (a static split of a mixed step left one thread
     * with most of the decode rows: a third slower). */
    long long lead = 0;
    while (lead < nsegs && sg[3 * lead + 1] < LORA_TR) lead++;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(n) reduction(| : failed)
    {
        float *h = (float *)malloc((size_t)(LORA_MAX_ROWS * a_cols) * sizeof(float));
        if (!h) failed = 1;
#pragma omp for schedule(static) nowait
        for (long long i = 0; i < lead; i++)
            if (h) segment(&job, i, h);
#pragma omp for schedule(dynamic, 1)
        for (long long i = lead; i < nsegs; i++)
            if (h) segment(&job, i, h);
        free(h);
    }
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}


/* ---- base linears -----------------------------------------------------------------------------------
 * y[M, N] = x[M, K] @ W^T (+ bias) with W pre-packed once (`Linear`) into column blocks of LIN_NB: wp
 * [ceil(N / LIN_NB), K, LIN_NB], zero-padded, so a block is one contiguous run that stays in L2 while every
 * group of rows streams past it. A register tile of MR rows x 32 columns (two vectors) holds the outputs
 * while k runs the whole inner dimension; each thread takes a contiguous share of the column blocks. On the
 * project's reference CPU (AMD EPYC, 2 threads) this beats oneDNN's pre-packed kernel at every row count a
 * serving step multiplies (`bench/serving.py --section linears`: 1.0-1.2x the speed at 64-512 rows,
 * 1.0-1.3x at 16, 1.4-3x for one row). MR is 8 where AVX-512 gives 32 vector registers (16 accumulators),
 * 4 elsewhere. */
#define LIN_NB 32

static inline __attribute__((always_inline)) void lin_micro(float *y, int64_t ys, const float *x, int64_t xs,
                                                            const float *wp, int64_t K, const float *bias, const int NR) {
    vf a[8], b[8];
    for (int r = 0; r < NR; r++) a[r] = b[r] = (vf){0};
    for (int64_t k = 0; k < K; k++) {
        const vf w0 = ldf(wp + k * LIN_NB), w1 = ldf(wp + k * LIN_NB + VW);
        for (int r = 0; r < NR; r++) {
            const float xv = x[r * xs + k];
            a[r] += xv * w0;
            b[r] += xv * w1;
        }
    }
    const vf b0 = bias ? ldf(bias) : (vf){0}, b1 = bias ? ldf(bias + VW) : (vf){0};
    for (int r = 0; r < NR; r++) {
        stf(y + r * ys, a[r] + b0);
        stf(y + r * ys + VW, b[r] + b1);
    }
}

/* Column blocks [nb0, nb1) of y, all M rows, in tiles of MR rows (the last tile: M % MR rows). */
static inline __attribute__((always_inline)) void lin_blocks(float *y, int64_t ys, const float *x, int64_t xs,
                                                             const float *wp, const float *bias, int64_t M, int64_t N,
                                                             int64_t K, int64_t nb0, int64_t nb1, const int MR) {
    float tmp[8 * LIN_NB];
    for (int64_t nb = nb0; nb < nb1; nb++) {
        const int64_t c0 = nb * LIN_NB, nc = N - c0 < LIN_NB ? N - c0 : LIN_NB;
        const float *wb = wp + nb * K * LIN_NB, *bb = bias ? bias + c0 : NULL;
        for (int64_t r0 = 0; r0 < M; r0 += MR) {
            const int64_t nr = M - r0 < MR ? M - r0 : MR;
            float *dst = nc == LIN_NB ? y + r0 * ys + c0 : tmp; /* a partial last block goes through tmp */
            const int64_t dst_s = nc == LIN_NB ? ys : LIN_NB;
            const float *xr = x + r0 * xs;
            switch (nr) {
            case 8: lin_micro(dst, dst_s, xr, xs, wb, K, bb, MR < 8 ? MR : 8); break;
            case 7: lin_micro(dst, dst_s, xr, xs, wb, K, bb, MR < 7 ? MR : 7); break;
            case 6: lin_micro(dst, dst_s, xr, xs, wb, K, bb, MR < 6 ? MR : 6); break;
            case 5: lin_micro(dst, dst_s, xr, xs, wb, K, bb, MR < 5 ? MR : 5); break;
            case 4: lin_micro(dst, dst_s, xr, xs, wb, K, bb, 4); break;
            case 3: lin_micro(dst, dst_s, xr, xs, wb, K, bb, 3); break;
            case 2: lin_micro(dst, dst_s, xr, xs, wb, K, bb, 2); break;
            default: lin_micro(dst, dst_s, xr, xs, wb, K, bb, 1); break;
            }
            if (nc < LIN_NB)
                for (int64_t r = 0; r < nr; r++) memcpy(y + (r0 + r) * ys + c0, tmp + r * LIN_NB, (size_t)nc * sizeof(float));
        }
    }
}

typedef void (*lin_fn)(float *, int64_t, const float *, int64_t, const float *, const float *, int64_t, int64_t,
                       int64_t, int64_t, int64_t);

static void lin_generic(float *y, int64_t ys, const float *x, int64_t xs, const float *wp, const float *bias, int64_t M,
                        int64_t N, int64_t K, int64_t nb0, int64_t nb1) {
    lin_blocks(y, ys, x, xs, wp, bias, M, N, K, nb0, nb1, 4);
}

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void lin_avx2(float *y, int64_t ys, const float *x, int64_t xs,
                                                           const float *wp, const float *bias, int64_t M, int64_t N,
                                                           int64_t K, int64_t nb0, int64_t nb1) {
    lin_blocks(y, ys, x, xs, wp, bias, M, N, K, nb0, nb1, 4);
}

__attribute__((target("avx512f,avx2,fma"))) static void lin_avx512(float *y, int64_t ys, const float *x, int64_t xs,
                                                                     const float *wp, const float *bias, int64_t M,
                                                                     int64_t N, int64_t K, int64_t nb0, int64_t nb1) {
    lin_blocks(y, ys, x, xs, wp, bias, M, N, K, nb0, nb1, 8);
}
#endif

static lin_fn lin_impl = lin_generic; /* set once at import: lin_pick() */

static lin_fn lin_pick(void) {
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return lin_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return lin_avx2;
#endif
    return lin_generic;
}

/* linear_isa([name]): the instruction set the linear kernel runs ("avx512", "avx2" or "generic"); with a
 * name, switch to it (ValueError where this CPU lacks it). For tests: each path gets checked on one CPU. */
static PyObject *linear_isa(PyObject *self, PyObject *args) {
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "|s", &name)) return NULL;
    if (name) {
        lin_fn want = NULL;
        int ok = 0;
        if (!strcmp(name, "generic")) want = lin_generic, ok = 1;
#if defined(__GNUC__) && defined(__x86_64__)
        else if (!strcmp(name, "avx2")) want = lin_avx2, ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        else if (!strcmp(name, "avx512")) want = lin_avx512, ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
        if (!ok) {
            PyErr_Format(PyExc_ValueError, "linear_isa: %s is not available on this CPU", name);
            return NULL;
        }
        lin_impl = want;
    }
#if defined(__GNUC__) && defined(__x86_64__)
    if (lin_impl == lin_avx512) return PyUnicode_FromString("avx512");
    if (lin_impl == lin_avx2) return PyUnicode_FromString("avx2");
#endif
    return PyUnicode_FromString("generic");
}

/* linear_packed(y, y_stride, x, x_stride, M, wp, N, K, bias, threads): y [M, N] and x [M, K] float32 with
 * the given row strides (unit column stride); wp [ceil(N / 32), K, 32] float32 as `Linear` packs it; bias
 * 0 or a float32 [ceil(N / 32) * 32]. */
static PyObject *linear_packed(PyObject *self, PyObject *args) {
    unsigned long long y, x, wp, bias;
    long long ys, xs, M, N, K, threads;
    if (!PyArg_ParseTuple(args, "KLKLLKLLKL", &y, &ys, &x, &xs, &M, &wp, &N, &K, &bias, &threads)) return NULL;
    if (M < 0 || N < 1 || K < 1 || ys < N || xs < K) {
        PyErr_SetString(PyExc_ValueError, "linear_packed: bad sizes");
        return NULL;
    }
    const lin_fn fn = lin_impl;
    const int64_t blocks = (N + LIN_NB - 1) / LIN_NB;
    int n = threads < 1 ? 1 : (threads > blocks ? (int)blocks : (int)threads);
    if (M == 0) Py_RETURN_NONE;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(n)
    {
        int nt = 1, tid = 0;
#ifdef _OPENMP
        nt = omp_get_num_threads();
        tid = omp_get_thread_num();
#endif
        fn((float *)(uintptr_t)y, ys, (const float *)(uintptr_t)x, xs, (const float *)(uintptr_t)wp,
           (const float *)(uintptr_t)bias, M, N, K, blocks * tid / nt, blocks * (tid + 1) / nt);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"paged_decode_attention", paged_decode_attention, METH_VARARGS,
     "Paged decode attention in float32 over data pointers (see the C source)."},
    {"linear_packed", linear_packed, METH_VARARGS,
     "y = x @ W^T (+ bias) in float32 with W packed in 32-column blocks (see the C source)."},
    {"linear_isa", linear_isa, METH_VARARGS, "The linear kernel's instruction set; with a name, switch to it."},
    {"lora_segments", lora_segments, METH_VARARGS,
     "Batched LoRA delta for short row segments in float32 over data pointers (see the C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu_kernels", "CPU kernels of the tenfold engine.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__cpu_kernels(void) {
    lin_impl = lin_pick();
    return PyModule_Create(&module);
}
