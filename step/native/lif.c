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
 */
#include <stdint.h>

#define CHUNK 1024

enum { CHARGE_IF = 0, CHARGE_LIF_DECAY_INPUT = 1, CHARGE_LIF = 2 };
enum { RESET_HARD = 0, RESET_SOFT = 1 };
enum { SG_POINTERS = 0, SG_ATAN = 1, SG_SIGMOID = 2 };

static inline __attribute__((always_inline)) void forward_chunk(
    const float *x, float *spikes, float *hs, float *v_last, int64_t T, int64_t N, int64_t start, int64_t n,
    const int charge, const int reset_mode, float tau, float th, float r, float v0, double *counted)
{
    float v[CHUNK];
    int32_t count[CHUNK];  /* integers: their sums vectorise (no float reassociation needed) */
    for (int64_t i = 0; i < n; ++i) {
        v[i] = v0;
        count[i] = 0;
    }
    for (int64_t t = 0; t < T; ++t) {
        const float *xt = x + t * N + start;
        float *st = spikes + t * N + start;
        float *ht = hs ? hs + t * N + start : 0;
        for (int64_t i = 0; i < n; ++i) {
            const float vi = v[i];
            float h;
            if (charge == CHARGE_IF) h = vi + xt[i];
            else if (charge == CHARGE_LIF_DECAY_INPUT) h = vi + (xt[i] - (vi - r)) / tau;
            else h = (vi - (vi - r) / tau) + xt[i];
            const float s = h >= th ? 1.0f : 0.0f;
            v[i] = reset_mode == RESET_SOFT ? h - s * th : s * r + (1.0f - s) * h;
            st[i] = s;
            if (ht) ht[i] = h;
            if (counted) count[i] += h >= th;
        }
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

#define FORWARD_CASE(C, R) \
    forward_chunk(x, spikes, hs, v_last, T, N, start, n, C, R, tau, th, r, v0, stats ? part : 0)

/* stats (optional, else 0): receives {spikes emitted, 1-bits of the per-position spike counts}, the
 * statistics the energy counters would otherwise read back from the spikes (step/energy/reduce.py) */
void step_lif_forward(const float *x, float *spikes, float *hs, float *v_last, int64_t T, int64_t N,
                      int charge, int reset_mode, float tau, float th, float r, float v0, double *stats,
                      int threads)
{
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
    double total = 0.0, ones = 0.0;  /* integer-valued: the sum does not depend on the order */
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+ : total, ones)
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
    if (stats) {
        stats[0] = total;
        stats[1] = ones;
    }
}

/* Backward of a detached reset (dV/dH = 1 - S for a hard reset, 1 for a soft one):
 *   gH[t] = gS[t] sg[t] + (gV[t] + c[t+1]) dV/dH,   gX[t] = gH[t] / tau (decay_input) or gH[t],
 *   c[t] = gH[t] - gH[t] / tau (LIF) or gH[t] (IF).
 * gs, gv and sg pointers may be 0 (an unused output, or a surrogate evaluated here). */
static inline __attribute__((always_inline)) void backward_chunk(
    const float *gs, const float *gv, const float *h, const float *const *sg_steps, float *gx,
    int64_t T, int64_t N, int64_t start, int64_t n, const int charge, const int reset_mode, const int sg_mode,
    float tau, float th, float c1, float c2)
{
    float carry[CHUNK];
    int have_carry = gv != 0;
    if (have_carry)
        for (int64_t i = 0; i < n; ++i) carry[i] = gv[start + i];
    for (int64_t t = T - 1; t >= 0; --t) {
        const float *hti = h + t * N + start;
        const float *gst = gs ? gs + t * N + start : 0;
        const float *sgt = sg_mode == SG_ATAN ? 0 : sg_steps[t] + start;
        float *gxt = gx + t * N + start;
        for (int64_t i = 0; i < n; ++i) {
            const float hv = hti[i];
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
                    const float in = reset_mode == RESET_HARD ? carry[i] * (1.0f - (hv >= th ? 1.0f : 0.0f)) : carry[i];
                    gh = gh + in;
                }
            } else if (have_carry) {
                gh = reset_mode == RESET_HARD ? carry[i] * (1.0f - (hv >= th ? 1.0f : 0.0f)) : carry[i];
            } else {
                gh = 0.0f;
            }
            if (charge == CHARGE_IF) {
                gxt[i] = gh;
                carry[i] = gh;
            } else {
                const float scaled = gh / tau;
                gxt[i] = charge == CHARGE_LIF_DECAY_INPUT ? scaled : gh;
                carry[i] = gh - scaled;
            }
        }
        have_carry = 1;
    }
}

#define BACKWARD_CASE(C, R, S) \
    backward_chunk(gs, gv, h, sg_steps, gx, T, N, start, n, C, R, S, tau, th, c1, c2)

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

void step_lif_backward(const float *gs, const float *gv, const float *h, const float *const *sg_steps, float *gx,
                       int64_t T, int64_t N, int charge, int reset_mode, int sg_mode, float tau, float th,
                       float c1, float c2, int threads)
{
    const int64_t chunks = (N + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t start = c * CHUNK;
        const int64_t n = N - start < CHUNK ? N - start : CHUNK;
        if (sg_mode == SG_ATAN) BACKWARD_RESETS(SG_ATAN);
        else if (sg_mode == SG_SIGMOID) BACKWARD_RESETS(SG_SIGMOID);
        else BACKWARD_RESETS(SG_POINTERS);
    }
}

/* u[t] = (h[t] - th) * alpha for every step: the argument of the sigmoid surrogate, in the order
 * Sigmoid.derivative computes it (torch evaluates the sigmoid itself, step by step). */
void step_scaled_distance(const float *h, float *u, int64_t numel, float th, float alpha, int threads)
{
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t c = 0; c < (numel + CHUNK - 1) / CHUNK; ++c) {
        const int64_t end = (c + 1) * CHUNK < numel ? (c + 1) * CHUNK : numel;
        for (int64_t i = c * CHUNK; i < end; ++i) u[i] = (h[i] - th) * alpha;
    }
}
