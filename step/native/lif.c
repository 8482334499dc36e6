/* Fused multi-step IF / LIF on float32 CPU tensors: one pass over [T, N] forward, one backward.
 *
 * Built on first use by step/native/__init__.py (gcc -O3 -fopenmp -ffp-contract=off, no fast-math)
 * and called through ctypes. Every expression below is written in the order of operations of
 * SpikingJelly 2.0's CPU reference (spikingjelly/_ops/lif/cpu.py) and of our torch loop
 * (step/neurons/kernels.py); with IEEE float32 arithmetic and no contraction into FMAs, each
 * element gets the same rounding as there, so spikes, membranes and gradients agree bit for bit.
 * Transcendental surrogates (sigmoid, erf, ...) are not evaluated here: torch computes them step by
 * step and the kernel reads the results through an array of T pointers.
 *
 * Elements are independent, so the work is split over elements (OpenMP, the runtime torch already
 * loaded) in chunks that keep the membrane of a chunk in a local buffer across the T steps.
 *
 * Memory traffic is what these kernels cost, so two options cut it for tensors larger than the
 * caches: the backward can recompute the charged membrane H from the input X (the forward then
 * writes no H: the caller keeps X instead), and results can be written with non-temporal stores,
 * which skip reading the destination lines into the cache first. Neither changes a value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#define CHUNK 1024

enum { CHARGE_IF = 0, CHARGE_LIF_DECAY_INPUT = 1, CHARGE_LIF = 2 };
enum { RESET_HARD = 0, RESET_SOFT = 1 };
enum { SG_POINTERS = 0, SG_ATAN = 1, SG_SIGMOID = 2 };

/* a / tau; for tau a power of two, a * (1 / tau), which is the same correctly rounded number (both
 * are a * 2^-k rounded once) without the slow division; `pow2` is a compile-time constant */
static inline __attribute__((always_inline)) float over_tau(const int pow2, float a, float tau, float inv_tau)
{
    return pow2 ? a * inv_tau : a / tau;
}

/* the charge H[t] from V[t-1] and X[t] */
static inline __attribute__((always_inline)) float charge_of(const int charge, const int pow2, float v, float x,
                                                             float tau, float inv_tau, float r)
{
    if (charge == CHARGE_IF) return v + x;
    if (charge == CHARGE_LIF_DECAY_INPUT) return v + over_tau(pow2, x - (v - r), tau, inv_tau);
    return (v - over_tau(pow2, v - r, tau, inv_tau)) + x;
}

/* V[t] from H[t] and S[t] */
static inline __attribute__((always_inline)) float reset_of(const int reset_mode, float h, float s, float th, float r)
{
    return reset_mode == RESET_SOFT ? h - s * th : s * r + (1.0f - s) * h;
}

/* dst[0..n) = src[0..n); streaming (non-temporal) stores when asked and the CPU has them */
static inline void store_run(float *dst, const float *src, int64_t n, int stream)
{
#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
    if (stream) {
#if defined(__AVX512F__)
        const int64_t W = 16, A = 64;
#elif defined(__AVX__)
        const int64_t W = 8, A = 32;
#else
        const int64_t W = 4, A = 16;
#endif
        int64_t i = 0;
        for (; i < n && ((uintptr_t)(dst + i) % A); ++i) dst[i] = src[i];
        for (; i + W <= n; i += W) {
#if defined(__AVX512F__)
            _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
#elif defined(__AVX__)
            _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
#else
            _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
#endif
        }
        for (; i < n; ++i) dst[i] = src[i];
        return;
    }
#endif
    (void)stream;
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static inline void store_fence(int stream)
{
#if defined(__SSE2__)
    if (stream) _mm_sfence();  /* streaming stores are weakly ordered: make them visible */
#endif
    (void)stream;
}

static inline __attribute__((always_inline)) void forward_chunk(
    const float *x, float *spikes, float *hs, float *v_last, int64_t T, int64_t N, int64_t start, int64_t n,
    const int charge, const int reset_mode, const int pow2, float tau, float inv_tau, float th, float r, float v0,
    float u_scale, double *counted, int stream)
{
    float v[CHUNK], sbuf[CHUNK], hbuf[CHUNK];
    int32_t count[CHUNK];  /* integers: their sums vectorise (no float reassociation needed) */
    for (int64_t i = 0; i < n; ++i) {
        v[i] = v0;
        count[i] = 0;
    }
    for (int64_t t = 0; t < T; ++t) {
        const float *xt = x + t * N + start;
        for (int64_t i = 0; i < n; ++i) {
            const float h = charge_of(charge, pow2, v[i], xt[i], tau, inv_tau, r);
            const float s = h >= th ? 1.0f : 0.0f;
            v[i] = reset_of(reset_mode, h, s, th, r);
            sbuf[i] = s;
            hbuf[i] = u_scale != 0.0f ? (h - th) * u_scale : h;
            if (counted) count[i] += h >= th;  /* only while energy is being counted */
        }
        store_run(spikes + t * N + start, sbuf, n, stream);
        if (hs) store_run(hs + t * N + start, hbuf, n, stream);
    }
    if (v_last)
        for (int64_t i = 0; i < n; ++i) v_last[start + i] = v[i];
    if (counted) {  /* the spikes just written (an exact count) and the 1-bits of each position's count */
        int64_t total = 0, ones = 0;
        for (int64_t i = 0; i < n; ++i) {
            total += count[i];
            ones += __builtin_popcount((uint32_t)count[i]);
        }
        counted[0] = (double)total;
        counted[1] = (double)ones;
    }
}

#define FORWARD_CASE(C, R)                                                                              \
    do {                                                                                                \
        if (inv_tau != 0.0f)                                                                            \
            forward_chunk(x, spikes, hs, v_last, T, N, start, n, C, R, 1, tau, inv_tau, th, r, v0,      \
                          u_scale, stats ? part : 0, stream);                                           \
        else                                                                                            \
            forward_chunk(x, spikes, hs, v_last, T, N, start, n, C, R, 0, tau, inv_tau, th, r, v0,      \
                          u_scale, stats ? part : 0, stream);                                           \
    } while (0)

/* inv_tau: 1 / tau when tau is a power of two (the divisions become multiplications, same values),
 * else 0; hs (optional): the charged membranes H, for a backward that reads them, or, when u_scale is
 * not 0, the sigmoid surrogate's argument (H - th) u_scale (Sigmoid.derivative's order of operations);
 * stats (optional, else 0):
 * receives {spikes emitted, 1-bits of the per-position spike counts}, the statistics the energy
 * counters would otherwise read back from the spikes (step/energy/reduce.py) */
void step_lif_forward(const float *x, float *spikes, float *hs, float *v_last, int64_t T, int64_t N,
                      int charge, int reset_mode, float tau, float inv_tau, float th, float r, float v0,
                      float u_scale, double *stats, int stream, int threads)
{
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
    double total = 0.0, ones = 0.0;  /* integer-valued: the sum does not depend on the order */
#pragma omp parallel num_threads(threads) reduction(+ : total, ones)
    {
#pragma omp for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) {
            const int64_t start = c * CHUNK;
            const int64_t n = N - start < CHUNK ? N - start : CHUNK;
            double part[2] = {0.0, 0.0};
            if (reset_mode == RESET_SOFT) {
                if (charge == CHARGE_IF) FORWARD_CASE(CHARGE_IF, RESET_SOFT);
                else if (charge == CHARGE_LIF_DECAY_INPUT) FORWARD_CASE(CHARGE_LIF_DECAY_INPUT, RESET_SOFT);
                else FORWARD_CASE(CHARGE_LIF, RESET_SOFT);
            } else {
                if (charge == CHARGE_IF) FORWARD_CASE(CHARGE_IF, RESET_HARD);
                else if (charge == CHARGE_LIF_DECAY_INPUT) FORWARD_CASE(CHARGE_LIF_DECAY_INPUT, RESET_HARD);
                else FORWARD_CASE(CHARGE_LIF, RESET_HARD);
            }
            total += part[0];
            ones += part[1];
        }
        store_fence(stream);
    }
    if (stats) {
        stats[0] = total;
        stats[1] = ones;
    }
}

/* Backward of a detached reset (dV/dH = 1 - S for a hard reset, 1 for a soft one):
 *   gH[t] = gS[t] sg[t] + (gV[t] + c[t+1]) dV/dH,   gX[t] = gH[t] / tau (decay_input) or gH[t],
 *   c[t] = gH[t] - gH[t] / tau (LIF) or gH[t] (IF).
 * gs, gv and sg pointers may be 0 (an unused output, or a surrogate evaluated here). H comes from
 * h, or, when h is 0, from the forward recurrence run again on x into `local` (T x CHUNK floats). */
static inline __attribute__((always_inline)) void backward_chunk(
    const float *gs, const float *gv, const float *h, const float *x, const float *spk, float *local,
    const float *const *sg_steps, float *gx, int64_t T, int64_t N, int64_t start, int64_t n, const int charge, const int reset_mode,
    const int sg_mode, const int pow2, float tau, float inv_tau, float th, float r, float v0, float c1, float c2,
    int stream)
{
    float carry[CHUNK], gbuf[CHUNK];
    if (!h && x) {
        float v[CHUNK];
        for (int64_t i = 0; i < n; ++i) v[i] = v0;
        for (int64_t t = 0; t < T; ++t) {
            const float *xt = x + t * N + start;
            float *lt = local + t * CHUNK;
            for (int64_t i = 0; i < n; ++i) {
                const float hv = charge_of(charge, pow2, v[i], xt[i], tau, inv_tau, r);
                v[i] = reset_of(reset_mode, hv, hv >= th ? 1.0f : 0.0f, th, r);
                lt[i] = hv;
            }
        }
    }
    int have_carry = gv != 0;
    if (have_carry)
        for (int64_t i = 0; i < n; ++i) carry[i] = gv[start + i];
    for (int64_t t = T - 1; t >= 0; --t) {
        const float *hti = h ? h + t * N + start : (x ? local + t * CHUNK : 0);
        const float *spt = spk ? spk + t * N + start : 0;
        const float *gst = gs ? gs + t * N + start : 0;
        const float *sgt = sg_mode == SG_ATAN ? 0 : sg_steps[t] + start;
        for (int64_t i = 0; i < n; ++i) {
            const float hv = hti ? hti[i] : 0.0f;
            /* S[t]: read from the spikes when given (no H kept), else H >= th */
            const float fired = spt ? spt[i] : (hv >= th ? 1.0f : 0.0f);
            float gh;
            if (gst) {
                float sg;
                if (sg_mode == SG_ATAN) {
                    const float z = (hv - th) * c1;
                    sg = (1.0f / (z * z + 1.0f)) * c2;
                } else if (sg_mode == SG_SIGMOID) {
                    const float s = sgt[i];
                    sg = ((1.0f - s) * s) * c1;
                } else {
                    sg = sgt[i];
                }
                gh = gst[i] * sg;
                if (have_carry) {
                    const float in = reset_mode == RESET_HARD ? carry[i] * (1.0f - fired) : carry[i];
                    gh = gh + in;
                }
            } else if (have_carry) {
                gh = reset_mode == RESET_HARD ? carry[i] * (1.0f - fired) : carry[i];
            } else {
                gh = 0.0f;
            }
            if (charge == CHARGE_IF) {
                gbuf[i] = gh;
                carry[i] = gh;
            } else {
                const float scaled = over_tau(pow2, gh, tau, inv_tau);
                gbuf[i] = charge == CHARGE_LIF_DECAY_INPUT ? scaled : gh;
                carry[i] = gh - scaled;
            }
        }
        store_run(gx + t * N + start, gbuf, n, stream);
        have_carry = 1;
    }
}

#define BACKWARD_CASE(C, R, S)                                                                          \
    do {                                                                                                \
        if (inv_tau != 0.0f)                                                                            \
            backward_chunk(gs, gv, h, x, spk, local, sg_steps, gx, T, N, start, n, C, R, S, 1, tau, inv_tau, \
                           th, r, v0, c1, c2, stream);                                                  \
        else                                                                                            \
            backward_chunk(gs, gv, h, x, spk, local, sg_steps, gx, T, N, start, n, C, R, S, 0, tau, inv_tau, \
                           th, r, v0, c1, c2, stream);                                                  \
    } while (0)

#define BACKWARD_CHARGES(R, S)                                              \
    do {                                                                    \
        if (charge == CHARGE_IF) BACKWARD_CASE(CHARGE_IF, R, S);             \
        else if (charge == CHARGE_LIF_DECAY_INPUT) BACKWARD_CASE(CHARGE_LIF_DECAY_INPUT, R, S); \
        else BACKWARD_CASE(CHARGE_LIF, R, S);                               \
    } while (0)

#define BACKWARD_RESETS(S)                                                  \
    do {                                                                    \
        if (reset_mode == RESET_SOFT) BACKWARD_CHARGES(RESET_SOFT, S);       \
        else BACKWARD_CHARGES(RESET_HARD, S);                               \
    } while (0)

/* One of: h (H saved); x (h == 0: recompute H from x and the reset parameters r, v0); spk (h == x == 0:
 * a surrogate read through sg_steps, S[t] read from the spikes). Returns 0, or -1 when the per-thread
 * buffer for the recomputed membranes could not be allocated */
int step_lif_backward(const float *gs, const float *gv, const float *h, const float *x, const float *spk,
                      const float *const *sg_steps, float *gx, int64_t T, int64_t N, int charge, int reset_mode,
                      int sg_mode, float tau, float inv_tau, float th, float r, float v0, float c1, float c2,
                      int stream, int threads)
{
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *local = (h || !x) ? 0 : (float *)malloc((size_t)T * CHUNK * sizeof(float));
        /* every thread meets the worksharing loop (skipping it would hang the team) */
#pragma omp for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) {
            if (!h && x && !local) {
                failed = 1;
                continue;
            }
            const int64_t start = c * CHUNK;
            const int64_t n = N - start < CHUNK ? N - start : CHUNK;
            if (sg_mode == SG_ATAN) BACKWARD_RESETS(SG_ATAN);
            else if (sg_mode == SG_SIGMOID) BACKWARD_RESETS(SG_SIGMOID);
            else BACKWARD_RESETS(SG_POINTERS);
        }
        store_fence(stream);
        free(local);
    }
    return failed ? -1 : 0;
}
