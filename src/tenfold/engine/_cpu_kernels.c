/* CPU kernels of the tenfold engine (an optional C extension; the engine falls back to PyTorch ops
 * when it is not built).
 *
 * Owns: paged decode attention in float32: every decode row's query heads attend over that sequence's
 * KV blocks read in place from the paged cache (no gathered copy), grouped-query heads sharing each key
 * and value row, two passes (scores, then the weighted sum of values), split over threads by row;
 * context lengths and block ids are checked before any read. Does not own: shape, dtype and layout
 * checks (the Python caller in `layers.py`), prefill attention (PyTorch's SDPA), anything else.
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

static PyMethodDef methods[] = {
    {"paged_decode_attention", paged_decode_attention, METH_VARARGS,
     "Paged decode attention in float32 over data pointers (see the C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cpu_kernels", "CPU kernels of the tenfold engine.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__cpu_kernels(void) { return PyModule_Create(&module); }
