/* CPU kernels of the tenfold engine (an optional C extension; the engine falls back to PyTorch ops
 * when it is not built).
 *
 * Owns: (1) paged decode attention in float32: every decode row's query heads attend over that sequence's
 * KV blocks read in place from the paged cache (no gathered copy), grouped-query heads sharing each key
 * and value row, two passes (scores, then the weighted sum of values), split over threads by row;
 * context lengths and block ids are checked before any read; (2) the batched LoRA delta of row segments
 * (decode rows grouped by adapter slot, prefill chunks cut into pieces of at most 16 rows) read in place
 * from the slot stacks, register-blocked; rows and slots are checked before any read. Does not own:
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


typedef struct {
    float *out;
    const float *q, *k, *v;
    const int64_t *tables, *lens;
    int64_t num_blocks, heads, kv_heads, head_dim, block_size, width;
    float scale;
    int64_t begin, end; /* rows [begin, end) */
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

TF_CLONES
static void decode_tasks(decode_job *job) {
    const int64_t H = job->heads, KVH = job->kv_heads, hd = job->head_dim, bs = job->block_size;
    const int64_t G = H / KVH, max_len = job->width * bs, token_stride = KVH * hd;
    float *scores = (float *)malloc((size_t)(H * max_len) * sizeof(float));
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
        for (int64_t t = 0; t < len; t++) {
            if (t % bs == 0 && t + bs < len) __builtin_prefetch(job->k + table[t / bs + 1] * bs * token_stride);
            const float *k = job->k + (table[t / bs] * bs + t % bs) * token_stride;
            for (int64_t h = 0; h < H; h++) {
                const float *qh = q + h * hd, *kh = k + (h / G) * hd;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int64_t i = 0; i < hd; i++) acc += qh[i] * kh[i];
                scores[h * max_len + t] = acc * job->scale;
            }
        }
        for (int64_t h = 0; h < H; h++) {
            float *s = scores + h * max_len;
            float m = s[0];
            for (int64_t t = 1; t < len; t++) m = s[t] > m ? s[t] : m;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t t = 0; t < len; t++) {
                s[t] = exp_nonpositive(s[t] - m);
                sum += s[t];
            }
            const float inv = 1.0f / sum;
#pragma omp simd
            for (int64_t t = 0; t < len; t++) s[t] *= inv;
        }
        memset(out, 0, (size_t)(H * hd) * sizeof(float));
        for (int64_t t = 0; t < len; t++) {
            if (t % bs == 0 && t + bs < len) __builtin_prefetch(job->v + table[t / bs + 1] * bs * token_stride);
            const float *v = job->v + (table[t / bs] * bs + t % bs) * token_stride;
            for (int64_t h = 0; h < H; h++) {
                const float p = scores[h * max_len + t], *vh = v + (h / G) * hd;
                float *o = out + h * hd;
#pragma omp simd
                for (int64_t i = 0; i < hd; i++) o[i] += p * vh[i];
            }
        }
    }
    free(scores);
}

/* paged_decode_attention(out, q, k_cache, v_cache, tables, lens, rows, num_blocks, heads, kv_heads,
 *                        head_dim, block_size, width, scale, threads)
 * Pointers are data pointers of contiguous tensors: out and q [rows, heads, head_dim] float32; caches
 * [blocks, block_size, kv_heads, head_dim] float32; tables [rows, width] int64; lens [rows] int64.
 * Threads come from the OpenMP runtime PyTorch has loaded (same soname, so one thread pool): a separate
 * pool would fight PyTorch's spinning workers for the cores. */
static PyObject *paged_decode_attention(PyObject *self, PyObject *args) {
    unsigned long long out, q, k, v, tables, lens;
    long long rows, num_blocks, heads, kv_heads, head_dim, block_size, width, threads;
    float scale;
    if (!PyArg_ParseTuple(args, "KKKKKKLLLLLLLfL", &out, &q, &k, &v, &tables, &lens, &rows, &num_blocks, &heads,
                          &kv_heads, &head_dim, &block_size, &width, &scale, &threads))
        return NULL;
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
            .out = (float *)(uintptr_t)out, .q = (const float *)(uintptr_t)q, .k = (const float *)(uintptr_t)k,
            .v = (const float *)(uintptr_t)v, .tables = (const int64_t *)(uintptr_t)tables,
            .lens = (const int64_t *)(uintptr_t)lens, .num_blocks = num_blocks, .heads = heads, .kv_heads = kv_heads, .head_dim = head_dim,
            .block_size = block_size, .width = width, .scale = scale,
            .begin = rows * tid / nt, .end = rows * (tid + 1) / nt, .failed = 0,
        };
        decode_tasks(&job);
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
 * through one register-blocked routine (`acc_gemm`): a tile of up to LORA_TR rows x LORA_TC columns of the
 * output is held in registers while the inner dimension streams past, so each weight row is loaded once
 * per tile and every load feeds LORA_TR fused multiply-adds. Rank-16 products are far from what MKL's
 * GEMM is tuned for (K = 16, or N = 16..48): a 512-token prefill step's delta takes about a quarter less
 * time this way than as matmuls (bench/RESULTS.md, 2026-12-03). */
#define LORA_MAX_ROWS 16
#define LORA_MAX_MODS 3
#define LORA_TR 4
#define LORA_TC 16

typedef struct {
    float *y;
    const float *x, *a;
    const float *b[LORA_MAX_MODS];
    const int64_t *segs;
    int64_t y_stride, x_stride, in_dim, a_cols, rank, mods;
    int64_t out[LORA_MAX_MODS], off[LORA_MAX_MODS];
} lora_job;

/* d[r, c] += sum_k xs[r * xst + k] * w[k * wst + c] for r < NR (<= LORA_TR), c < nc (<= LORA_TC). Inlined
 * with a constant NR, and nc == LORA_TC in all but edge tiles, so the accumulators live in registers. */
static inline __attribute__((always_inline)) void acc_tile(float *d, int64_t dst, const float *xs, int64_t xst,
                                                           const float *w, int64_t wst, int64_t K, const int NR,
                                                           const int64_t nc) {
    float acc[LORA_TR][LORA_TC];
    for (int r = 0; r < NR; r++)
#pragma omp simd
        for (int64_t c = 0; c < LORA_TC; c++) acc[r][c] = c < nc ? d[r * dst + c] : 0.0f;
    if (nc == LORA_TC) {
        for (int64_t k = 0; k < K; k++) {
            const float *wr = w + k * wst;
            for (int r = 0; r < NR; r++) {
                const float xv = xs[r * xst + k];
#pragma omp simd
                for (int64_t c = 0; c < LORA_TC; c++) acc[r][c] += xv * wr[c];
            }
        }
    } else {
        for (int64_t k = 0; k < K; k++) {
            const float *wr = w + k * wst;
            for (int r = 0; r < NR; r++) {
                const float xv = xs[r * xst + k];
                for (int64_t c = 0; c < nc; c++) acc[r][c] += xv * wr[c];
            }
        }
    }
    for (int r = 0; r < NR; r++)
        for (int64_t c = 0; c < nc; c++) d[r * dst + c] = acc[r][c];
}

/* d[n, cols] += xs[n, K] @ w[K, cols] (row strides dst, xst, wst): full groups of LORA_TR rows in register
 * tiles; the last rows (fewer than LORA_TR, e.g. a decode row) stream each weight row once, in order, into
 * their output rows (held in L1), which is what a memory-bound single row wants. */
static inline __attribute__((always_inline)) void acc_gemm(float *d, int64_t dst, const float *xs, int64_t xst,
                                                           const float *w, int64_t wst, int64_t n, int64_t K,
                                                           int64_t cols) {
    const int64_t full = n - n % LORA_TR;
    if (full)
        for (int64_t c0 = 0; c0 < cols; c0 += LORA_TC) {
            const int64_t nc = cols - c0 < LORA_TC ? cols - c0 : LORA_TC;
            for (int64_t r0 = 0; r0 < full; r0 += LORA_TR)
                acc_tile(d + r0 * dst + c0, dst, xs + r0 * xst, xst, w + c0, wst, K, LORA_TR, nc);
        }
    for (int64_t k = 0; k < K; k++) {
        const float *wr = w + k * wst;
        for (int64_t r = full; r < n; r++) {
            const float xv = xs[r * xst + k];
            float *dr = d + r * dst;
#pragma omp simd
            for (int64_t c = 0; c < cols; c++) dr[c] += xv * wr[c];
        }
    }
}

TF_CLONES
static void lora_segment(const lora_job *job, int64_t seg, float *h) {
    const int64_t start = job->segs[3 * seg], n = job->segs[3 * seg + 1], slot = job->segs[3 * seg + 2];
    const int64_t in = job->in_dim, ac = job->a_cols, R = job->rank;
    memset(h, 0, (size_t)(n * ac) * sizeof(float));
    acc_gemm(h, ac, job->x + start * job->x_stride, job->x_stride, job->a + slot * in * ac, ac, n, in, ac);
    for (int64_t i = 0; i < job->mods; i++)
        acc_gemm(job->y + start * job->y_stride + job->off[i], job->y_stride, h + i * R, ac,
                 job->b[i] + slot * R * job->out[i], job->out[i], n, R, job->out[i]);
}

/* lora_segments(y, y_stride, x, x_stride, rows_total, in_dim, segs, nsegs, a_stack, capacity, a_cols, rank,
 *               (b_stack, out, off) * mods ..., threads)
 * y [rows_total, *] and x [rows_total, in_dim] float32 with the given row strides (unit column stride);
 * segs int64 [nsegs, 3] = (start row, rows <= 16, slot); a_stack [capacity, in_dim, a_cols]; each
 * b_stack [capacity, rank, out]; a_cols = mods * rank. */
static PyObject *lora_segments(PyObject *self, PyObject *args) {
    unsigned long long y, x, segs, a, b[LORA_MAX_MODS] = {0};
    long long y_stride, x_stride, rows_total, in_dim, nsegs, capacity, a_cols, rank, threads;
    long long out[LORA_MAX_MODS] = {0}, off[LORA_MAX_MODS] = {0};
    PyObject *mods;
    if (!PyArg_ParseTuple(args, "KLKLLLKLKLLLO!L", &y, &y_stride, &x, &x_stride, &rows_total, &in_dim, &segs, &nsegs,
                          &a, &capacity, &a_cols, &rank, &PyTuple_Type, &mods, &threads))
        return NULL;
    const Py_ssize_t nmods = PyTuple_GET_SIZE(mods);
    if (nmods < 1 || nmods > LORA_MAX_MODS || rank < 1 || a_cols != nmods * rank || in_dim < 1 || nsegs < 0) {
        PyErr_SetString(PyExc_ValueError, "lora_segments: bad sizes");
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
    lora_job job = {.y = (float *)(uintptr_t)y, .x = (const float *)(uintptr_t)x, .a = (const float *)(uintptr_t)a,
                    .segs = sg, .y_stride = y_stride, .x_stride = x_stride, .in_dim = in_dim, .a_cols = a_cols,
                    .rank = rank, .mods = nmods};
    for (Py_ssize_t i = 0; i < nmods; i++) {
        job.b[i] = (const float *)(uintptr_t)b[i];
        job.out[i] = out[i];
        job.off[i] = off[i];
    }
    int n = threads < 1 ? 1 : (threads > nsegs ? (int)(nsegs > 0 ? nsegs : 1) : (int)threads);
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel num_threads(n) reduction(| : failed)
    {
        float *h = (float *)malloc((size_t)(LORA_MAX_ROWS * a_cols) * sizeof(float));
        if (!h) failed = 1;
#pragma omp for schedule(static)
        for (long long i = 0; i < nsegs; i++)
            if (h) lora_segment(&job, i, h);
        free(h);
    }
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"paged_decode_attention", paged_decode_attention, METH_VARARGS,
     "Paged decode attention in float32 over data pointers (see the C source)."},
    {"lora_segments", lora_segments, METH_VARARGS,
     "Batched LoRA delta for short row segments in float32 over data pointers (see the C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu_kernels", "CPU kernels of the tenfold engine.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__cpu_kernels(void) { return PyModule_Create(&module); }
