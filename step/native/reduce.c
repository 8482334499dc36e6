/* The statistics the energy counters need from one float32 tensor, in one pass over its memory.
 *
 * The tensor holds `steps` runs of N elements (step t at t * N). Per element: non-zeros, sum, sum of
 * magnitudes, extremes, whether it has a fractional part (or is not finite); positions holding a
 * NaN (non_integer and nan count positions, not elements: only "any" matters); per position i:
 * the count c_i = sum over the steps of x[t, i] and the 1-bits of |c_i| (the activations of the
 * bit-serial integer twin; meaningful only when every element is an integer).
 *
 * step_reduce_planes does the same and also adds, per position i of one sample, the sums over the
 * steps and the samples of |x| and of the non-zeros into two planes of P doubles (the per-position
 * spike counts the exact and NeuroBench fan-out counts are weighted with). The tensor is then
 * steps x (N / P) samples of P elements; positions are processed in blocks of the plane, each
 * block by one thread for every sample, so the planes need no locks and no per-thread copies.
 *
 * Built on first use by step/native/__init__.py and called through ctypes by
 * step/energy/reduce.py. Positions are processed in chunks of CHUNK with per-position float
 * accumulators over the steps (exact for the small integers spikes are; vectorisable without
 * fast-math because lanes never mix), then summed per chunk in double, and the chunks are combined
 * in chunk order, so the result does not depend on the number of threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define CHUNK 1024
#define LANES 16

typedef struct {
    double nnz, sum, abs_sum, ones;
    double non_integer, nan;  /* positions with a fractional / NaN element (0: none) */
    float lo, hi;
} step_reduction;

/* the 1-bits of an integer count below 2**32 (the caller ignores `ones` unless every element is an
 * integer) */
#define LANE_STEP(I, J)                                                                  \
    do {                                                                                 \
        const int64_t i_ = (I);                                                          \
        s[J] += count[i_]; a[J] += mag[i_]; z[J] += nz[i_];                              \
        f[J] += frac[i_] != 0.0f ? 1.0 : 0.0;                                            \
        q[J] += mag[i_] != mag[i_] ? 1.0 : 0.0;                                          \
        ll[J] = lo[i_] < ll[J] ? lo[i_] : ll[J];                                         \
        hh[J] = hi[i_] > hh[J] ? hi[i_] : hh[J];                                         \
        const float c_ = fabsf(count[i_]);                                               \
        const uint32_t k_ = (c_ == truncf(c_) && c_ < 4294967296.0f) ? (uint32_t)c_ : 0u; \
        o[J] += (double)__builtin_popcount(k_);                                          \
    } while (0)

static void reduce_chunk(const float *x, int64_t steps, int64_t N, int64_t start, int64_t n, step_reduction *r,
                         double *plane_abs, double *plane_nz)
{
    float count[CHUNK], mag[CHUNK], nz[CHUNK], frac[CHUNK], lo[CHUNK], hi[CHUNK];
    for (int64_t i = 0; i < n; ++i) {
        count[i] = 0.0f; mag[i] = 0.0f; nz[i] = 0.0f; frac[i] = 0.0f;
        lo[i] = INFINITY; hi[i] = -INFINITY;
    }
    for (int64_t t = 0; t < steps; ++t) {
        const float *xt = x + t * N + start;
        for (int64_t i = 0; i < n; ++i) {
            const float v = xt[i];
            count[i] += v;
            mag[i] += fabsf(v);                 /* NaN here iff some element is NaN */
            nz[i] += v != 0.0f ? 1.0f : 0.0f;
            frac[i] += fabsf(v - truncf(v));    /* 0 iff every element is an integer (NaN for +-inf) */
            lo[i] = v < lo[i] ? v : lo[i];
            hi[i] = v > hi[i] ? v : hi[i];
        }
    }
    if (plane_abs) { /* integer-valued for spikes: exact in double whatever the order */
        for (int64_t i = 0; i < n; ++i) {
            plane_abs[i] += mag[i];
            plane_nz[i] += nz[i];
        }
    }
    /* per-lane partial sums (lanes never mix, so this vectorises without reassociating), then the
     * lanes in order: the chunk's totals do not depend on the vector width */
    double s[LANES], a[LANES], z[LANES], f[LANES], q[LANES], o[LANES];
    float ll[LANES], hh[LANES];
    for (int j = 0; j < LANES; ++j) {
        s[j] = a[j] = z[j] = f[j] = q[j] = o[j] = 0.0;
        ll[j] = INFINITY; hh[j] = -INFINITY;
    }
    const int64_t full = n - n % LANES;
    for (int64_t i0 = 0; i0 < n; i0 += LANES) {
        if (i0 < full) {
            for (int j = 0; j < LANES; ++j) LANE_STEP(i0 + j, j);
        } else {
            for (int j = 0; j < n - i0; ++j) LANE_STEP(i0 + j, j);
        }
    }
    double ts = 0.0, ta = 0.0, tz = 0.0, tf = 0.0, tq = 0.0, to = 0.0;
    float l = INFINITY, h = -INFINITY;
    for (int j = 0; j < LANES; ++j) {
        ts += s[j]; ta += a[j]; tz += z[j]; tf += f[j]; tq += q[j]; to += o[j];
        l = ll[j] < l ? ll[j] : l;
        h = hh[j] > h ? hh[j] : h;
    }
    r->sum = ts; r->abs_sum = ta; r->nnz = tz; r->non_integer = tf; r->nan = tq; r->ones = to;
    r->lo = l; r->hi = h;
}

/* the chunks' results in chunk order (the totals do not depend on the number of threads) */
static void combine(const step_reduction *parts, int64_t chunks, step_reduction *out)
{
    step_reduction r = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, INFINITY, -INFINITY};
    for (int64_t c = 0; c < chunks; ++c) {
        r.nnz += parts[c].nnz; r.sum += parts[c].sum; r.abs_sum += parts[c].abs_sum; r.ones += parts[c].ones;
        r.non_integer += parts[c].non_integer; r.nan += parts[c].nan;
        r.lo = parts[c].lo < r.lo ? parts[c].lo : r.lo;
        r.hi = parts[c].hi > r.hi ? parts[c].hi : r.hi;
    }
    *out = r;
}

/* Returns 0, or -1 if the scratch for the per-chunk results could not be allocated. */
int step_reduce(const float *x, int64_t steps, int64_t N, step_reduction *out, int threads)
{
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
    step_reduction *parts = (step_reduction *)malloc((size_t)(chunks > 0 ? chunks : 1) * sizeof(step_reduction));
    if (!parts) return -1;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t start = c * CHUNK;
        reduce_chunk(x, steps, N, start, N - start < CHUNK ? N - start : CHUNK, &parts[c], NULL, NULL);
    }
    combine(parts, chunks, out);
    free(parts);
    return 0;
}

/* step_reduce plus the planes (N must be a multiple of P; the planes are added to, not cleared).
 * Returns 0, -1 without memory, -2 if P does not divide N. */
int step_reduce_planes(const float *x, int64_t steps, int64_t N, int64_t P, step_reduction *out,
                       double *plane_abs, double *plane_nz, int threads)
{
    if (P <= 0 || N % P) return -2;
    const int64_t samples = N / P, blocks = (P + CHUNK - 1) / CHUNK;
    const int64_t chunks = samples * blocks;
    step_reduction *parts = (step_reduction *)malloc((size_t)(chunks > 0 ? chunks : 1) * sizeof(step_reduction));
    if (!parts) return -1;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t lo = b * CHUNK, n = P - lo < CHUNK ? P - lo : CHUNK;
        for (int64_t s = 0; s < samples; ++s)
            reduce_chunk(x, steps, N, s * P + lo, n, &parts[s * blocks + b], plane_abs + lo, plane_nz + lo);
    }
    combine(parts, chunks, out);
    free(parts);
    return 0;
}
