// Fused CPU kernels of the local relation op (SPEC.md section 1).
//
// Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019,
// arXiv:1904.11491, equation (2): y(p') = sum_p w(p', p) x(p), with
// w = softmax_p(phi(q(p'), k(p)) + prior(p - p')) over the in-image k x k neighbours of p'.
//
// Tasks: one (batch b, group g, band of output rows). The band's input rows of x (the m
// channels of g) and of key are copied into a per-thread scratch, zero-padded by r columns on
// each side, so the inner loops need no bounds checks. For each output row the k*k logits of
// every output pixel live in a (k*k, Wv) scratch (Wv = Wo rounded up to the vector block V):
// logits, max, exp, sum, then the m channels are aggregated with the block of V output columns
// held in registers. Nothing of size k*k*H*W is written to memory and the forward saves no
// statistics: the backward recomputes the softmax row by row.
//
// Borders: out-of-image neighbours get the logit -inf through an additive column mask (and only
// the image's kernel rows are visited), so their weights are exactly 0 and they are excluded
// from the softmax, not zero-padded into it; their values are read from the zero padding.
//
// Backward races: the gradients of x and key are scatters from output pixels to input pixels.
// They go to the task's padded band buffers (at stride 1 in gather form, so no two writes of
// one loop collide) and are added to grad_x / grad_key at the end of the task. Bands are at
// least (k - 1) / s rows high, so two bands of the same parity never touch the same input row:
// even bands run in parallel, then odd bands. The prior's gradient is summed per task into its
// own slot and reduced by the caller.
//
// Vectors: GCC/Clang vector extensions (compiled with -O3 -march=native by fused_cpu.py).

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

enum Phi : int { kSqdiff = 0, kAbsdiff = 1, kMult = 2 };

// Sizes of one call and the in-image column range of every column offset kx.
struct Geometry {
  int64_t B, C, H, W, G, m, k, r, s, Ho, Wo;
  std::vector<int64_t> jlo, jhi;  // (k,) each: column j of offset kx is inside iff jlo <= j < jhi

  Geometry(const at::Tensor& x, const at::Tensor& key, int64_t k_, int64_t s_)
      : B(x.size(0)), C(x.size(1)), H(x.size(2)), W(x.size(3)), G(key.size(1)), k(k_),
        r((k_ - 1) / 2), s(s_), jlo(k_), jhi(k_) {
    m = (C + G - 1) / G;
    Ho = (H - 1) / s + 1;
    Wo = (W - 1) / s + 1;
    for (int64_t kx = 0; kx < k; ++kx) {
      const int64_t dx = kx - r;
      const int64_t lo = dx >= 0 ? 0 : (-dx + s - 1) / s;  // j*s + dx >= 0
      const int64_t last = W - 1 - dx;                     // j*s <= W - 1 - dx
      const int64_t hi = last < 0 ? 0 : std::min(Wo, last / s + 1);
      jlo[kx] = lo;
      jhi[kx] = std::max(lo, hi);
    }
  }

  // Valid kernel rows [ky0, ky1) of output row i.
  int64_t ky0(int64_t i) const { return std::max<int64_t>(0, r - i * s); }
  int64_t ky1(int64_t i) const { return std::min<int64_t>(k, H - i * s + r); }
  int64_t channel_end(int64_t g) const { return std::min(C, (g + 1) * m); }

  // Tasks per thread chunk for at::parallel_for so that a chunk has at least ~32k multiply-adds
  // (ATen's GRAIN_SIZE): tiny calls then run inline, without waking the thread pool.
  int64_t grain(int64_t rows_per_task) const {
    const int64_t work = std::max<int64_t>(1, rows_per_task * (m + 2) * k * k * Wo);
    return std::max<int64_t>(1, at::internal::GRAIN_SIZE / work);
  }
};

// Layout of the zero-padded scratch rows of x and key: padded column t (input column t - r) is
// stored at (t % s) * Wp + t / s, so that the neighbours j*s + kx of consecutive output columns j
// are consecutive in memory and load as one vector (at stride 1: the plain padded row).
struct PaddedRows {
  int64_t s, r, Wp, len;       // len = s * Wp: the row stride
  std::vector<int64_t> koff;   // (k,): where neighbour kx of output column 0 is stored

  PaddedRows(const Geometry& geo, int64_t Wx)
      : s(geo.s), r(geo.r), Wp((Wx + geo.s - 1) / geo.s), len(geo.s * Wp), koff(geo.k) {
    for (int64_t kx = 0; kx < geo.k; ++kx) koff[kx] = (kx % s) * Wp + kx / s;
  }

  // Writes the W input values of one row; the padding positions are never written (stay 0).
  template <typename T>
  void copy(T* __restrict__ dst, const T* __restrict__ src, int64_t W) const {
    if (s == 1) {
      std::memcpy(dst + r, src, W * sizeof(T));
      return;
    }
    for (int64_t phase = 0; phase < s; ++phase) {  // padded columns t = u*s + phase
      T* __restrict__ out = dst + phase * Wp;
      const int64_t u0 = r > phase ? (r - phase + s - 1) / s : 0;  // first t >= r
      for (int64_t u = u0; u * s + phase < r + W; ++u) out[u] = src[u * s + phase - r];
    }
  }
};

// GCC/Clang vector of V elements of T (one or more SIMD registers), loads and stores.
template <typename T, int V>
struct VecOf {
  typedef T type __attribute__((vector_size(V * sizeof(T))));
};
template <typename T, int V>
using Vec = typename VecOf<T, V>::type;

template <typename T, int V>
inline Vec<T, V> load(const T* p) {
  Vec<T, V> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, int V>
inline void store(T* p, const Vec<T, V>& v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T, int V>
inline Vec<T, V> splat(T value) {
  Vec<T, V> v = {};
  return v + value;
}

// exp of V values, exactly 0 for -inf. float: exp(x) = 2^n * exp(f), |f| <= ln2/2, degree-6
// Taylor polynomial, relative error < 3e-7 (measured 2.3e-7 on [-87, 0], about 2 ulp); results
// below 2^-126 are flushed to 0. double: std::exp per element (float64 is for checking, not
// for speed).
template <typename T, int V>
inline Vec<T, V> exp_vec(Vec<T, V> x) {
  if constexpr (std::is_same_v<T, double>) {
    for (int jj = 0; jj < V; ++jj) x[jj] = std::exp(x[jj]);
    return x;
  } else {
    using IntVec = Vec<int32_t, V>;
    const Vec<float, V> lo = splat<float, V>(-100.0f);
    x = x < lo ? lo : x;
    const Vec<float, V> n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round
    const Vec<float, V> f = x - n * 0.693359375f + n * 2.12194440e-4f;  // ln2 split hi/lo
    Vec<float, V> p = splat<float, V>(1.0f / 720.0f);
    p = p * f + 1.0f / 120.0f;
    p = p * f + 1.0f / 24.0f;
    p = p * f + 1.0f / 6.0f;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    IntVec biased = __builtin_convertvector(n, IntVec) + 127;
    const IntVec zero = {};
    biased = biased < zero ? zero : biased;
    const IntVec bits = biased << 23;
    Vec<float, V> scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
  }
}

template <int PHI, typename VT>
inline VT phi_vec(VT q, VT k) {
  if constexpr (PHI == kSqdiff) {
    const VT d = q - k;
    return -d * d;
  } else if constexpr (PHI == kAbsdiff) {
    const VT d = q - k;
    return d < VT{} ? d : -d;  // -|d|
  } else {
    return q * k;
  }
}

// Additive column mask of the forward: colmask[kx][j] = -inf where neighbour column j*s + kx - r
// is outside the image, else 0. Padding columns j >= Wo keep only the centre (finite softmax).
template <typename T>
void fill_column_mask(const Geometry& geo, int64_t Wv, T* colmask) {
  for (int64_t kx = 0; kx < geo.k; ++kx) {
    for (int64_t j = 0; j < Wv; ++j) {
      const bool inside = j < geo.Wo ? (geo.jlo[kx] <= j && j < geo.jhi[kx]) : kx == geo.r;
      colmask[kx * Wv + j] = inside ? T(0) : -std::numeric_limits<T>::infinity();
    }
  }
}

// Softmax weights of one output row, unnormalised, over blocks of V columns: e[n][j] =
// exp(logit - max_j), exactly 0 outside the image; inv[j] = 1 / sum_n e[n][j].
// q: (Wv,) query row, zero-padded; kp: padded key row of kernel row 0 (layout pr);
// prior: (k*k,) of the group; colmask: (k, Wv); e: (k*k, ld) with ld >= Wv, columns [0, Wv) of
// rows [ky0*k, ky1*k) written.
template <typename T, int PHI, int V>
void softmax_block(const Geometry& geo, int64_t ky0, int64_t ky1, const T* __restrict__ q,
                   const T* __restrict__ kp, const T* __restrict__ prior,
                   const T* __restrict__ colmask, const PaddedRows& pr, int64_t Wv, int64_t ld,
                   T* __restrict__ e, T* __restrict__ inv) {
  const int64_t k = geo.k;
  for (int64_t jb = 0; jb < Wv; jb += V) {
    const Vec<T, V> qv = load<T, V>(q + jb);
    Vec<T, V> mx = splat<T, V>(-std::numeric_limits<T>::infinity());
    for (int64_t ky = ky0; ky < ky1; ++ky) {
      for (int64_t kx = 0; kx < k; ++kx) {
        const int64_t n = ky * k + kx;
        const Vec<T, V> kv = load<T, V>(kp + ky * pr.len + pr.koff[kx] + jb);
        const Vec<T, V> mask = load<T, V>(colmask + kx * Wv + jb);
        const Vec<T, V> logit = phi_vec<PHI>(qv, kv) + prior[n] + mask;
        store<T, V>(e + n * ld + jb, logit);
        mx = mx > logit ? mx : logit;
      }
    }
    Vec<T, V> sum = {};
    for (int64_t n = ky0 * k; n < ky1 * k; ++n) {
      const Vec<T, V> w = exp_vec<T, V>(load<T, V>(e + n * ld + jb) - mx);
      store<T, V>(e + n * ld + jb, w);
      sum += w;
    }
    store<T, V>(inv + jb, T(1) / sum);
  }
}

// Channels aggregated together: they share each load of the weights, and their independent
// accumulators hide the latency of the multiply-adds.
constexpr int64_t kChannelBlock = 4;

// y[c][j] = inv[j] * sum_{ky, kx} e[ky, kx][j] * xp_c[ky][j*s + kx] for the channels of one
// block and every block of V output columns; the sum runs over the image's kernel rows.
// e: (k*k, Wv) weights, 0 outside the image; xcs: kernel row 0 of each channel in the padded
// scratch (layout pr); ys: output rows (nullptr: padding channel, not stored).
template <typename T, int V>
void aggregate_block(const Geometry& geo, const T* __restrict__ e, const T* __restrict__ inv,
                     const T* const* xcs, T* const* ys, const PaddedRows& pr, int64_t Wv,
                     int64_t ky0, int64_t ky1) {
  const int64_t k = geo.k, Wo = geo.Wo;
  for (int64_t jb = 0; jb < Wv; jb += V) {
    Vec<T, V> acc[kChannelBlock] = {};
    for (int64_t ky = ky0; ky < ky1; ++ky) {
      const T* __restrict__ er = e + ky * k * Wv + jb;
      for (int64_t kx = 0; kx < k; ++kx) {
        const Vec<T, V> w = load<T, V>(er + kx * Wv);
        for (int64_t cc = 0; cc < kChannelBlock; ++cc) {
          acc[cc] += w * load<T, V>(xcs[cc] + ky * pr.len + pr.koff[kx] + jb);
        }
      }
    }
    const Vec<T, V> scale = load<T, V>(inv + jb);
    const int64_t nv = std::min<int64_t>(V, Wo - jb);
    for (int64_t cc = 0; cc < kChannelBlock; ++cc) {
      if (ys[cc] == nullptr) continue;
      const Vec<T, V> out = acc[cc] * scale;
      if (nv == V) {
        store<T, V>(ys[cc] + jb, out);
      } else {
        for (int64_t jj = 0; jj < nv; ++jj) ys[cc][jb + jj] = out[jj];
      }
    }
  }
}

// Output rows per forward task: the band's input rows are copied once into a zero-padded scratch.
constexpr int64_t kForwardBand = 8;

// Forward: task (b, g, band of output rows) writes y[b, c, i, :] for the m channels c of group g
// and the rows i of the band. The band's input rows of x and key, zero-padded by r columns on
// each side, are copied to a scratch so that the inner loops have no bounds: out-of-image
// neighbours get the logit -inf (weight exactly 0) and read the zero padding. Each block of V
// output columns is accumulated in registers over the k*k neighbours.
template <typename T, int PHI, int S, int V>
void forward_kernel(const Geometry& geo, const T* x, const T* query, const T* key,
                    const T* prior, T* y) {
  const int64_t C = geo.C, H = geo.H, W = geo.W, G = geo.G, k = geo.k, r = geo.r;
  const int64_t Ho = geo.Ho, Wo = geo.Wo, kk = k * k, m = geo.m;
  const int64_t s = S > 0 ? S : geo.s;
  const int64_t Wv = (Wo + V - 1) / V * V;                  // e's row length, whole blocks
  const PaddedRows pr(geo, std::max(W + 2 * r, (Wv - 1) * s + k));
  const int64_t band = std::min(Ho, kForwardBand), bands = (Ho + band - 1) / band;
  const int64_t rows = (band - 1) * s + k;                   // input rows read by one band
  at::parallel_for(0, geo.B * G * bands, geo.grain(band), [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(kk * Wv + 2 * Wv + k * Wv + (m + 1) * rows * pr.len, T(0));
    T* e = scratch.data();       // (k*k, Wv)
    T* inv = e + kk * Wv;        // (Wv,)
    T* q = inv + Wv;             // (Wv,) query row, zero-padded
    T* colmask = q + Wv;         // (k, Wv)
    T* kp = colmask + k * Wv;    // (rows, pr.len): padded key rows; padding stays 0
    T* xp = kp + rows * pr.len;  // (m, rows, pr.len), the same for the group's channels
    fill_column_mask(geo, Wv, colmask);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task % bands, bg = task / bands, g = bg % G, b = bg / G;
      const int64_t i0 = t * band, i1 = std::min(Ho, i0 + band), top = i0 * s - r;
      const int64_t c0 = g * m, mc = geo.channel_end(g) - c0;
      for (int64_t rr = 0; rr < rows; ++rr) {
        const int64_t in_row = top + rr;
        if (in_row < 0 || in_row >= H) continue;  // never read: its kernel row is skipped
        pr.copy(kp + rr * pr.len, key + (bg * H + in_row) * W, W);
        for (int64_t cl = 0; cl < mc; ++cl) {
          pr.copy(xp + (cl * rows + rr) * pr.len, x + ((b * C + c0 + cl) * H + in_row) * W, W);
        }
      }
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t ky0 = geo.ky0(i), ky1 = geo.ky1(i), rr0 = (i - i0) * s;
        std::memcpy(q, query + (bg * Ho + i) * Wo, Wo * sizeof(T));
        softmax_block<T, PHI, V>(geo, ky0, ky1, q, kp + rr0 * pr.len, prior + g * kk, colmask,
                                 pr, Wv, Wv, e, inv);
        for (int64_t cl = 0; cl < mc; cl += kChannelBlock) {
          const T* xcs[kChannelBlock];  // kernel row 0 of each channel; extra ones repeat cl
          T* ys[kChannelBlock];
          for (int64_t cc = 0; cc < kChannelBlock; ++cc) {
            const int64_t c = cl + cc < mc ? cl + cc : cl;
            xcs[cc] = xp + (c * rows + rr0) * pr.len;
            ys[cc] = cl + cc < mc ? y + ((b * C + c0 + c) * Ho + i) * Wo : nullptr;
          }
          aggregate_block<T, V>(geo, e, inv, xcs, ys, pr, Wv, ky0, ky1);
        }
      }
    }
  });
}

// Neighbours whose dw the backward accumulates together over the channels.
constexpr int64_t kNeighbourBlock = 4;

template <int PHI, typename VT>
inline void phi_grad_vec(VT q, VT k, VT& dq, VT& dk) {
  if constexpr (PHI == kSqdiff) {
    dq = (k - q) * 2;
    dk = -dq;
  } else if constexpr (PHI == kAbsdiff) {
    const VT d = q - k, zero = {}, one = zero + 1;
    dk = d > zero ? one : (d < zero ? -one : zero);  // sign(q - k), sign(0) = 0 as in torch
    dq = -dk;
  } else {
    dq = k;
    dk = q;
  }
}

// dst[j*s + kx] += src[kx][j] * mul[j] (mul = 1 when MUL is false) for the k neighbours kx of
// one kernel row and all output columns j: the transpose of the forward's read. At stride 1 it
// runs as a gather over the padded input columns t (t - kx = j), so no two writes collide.
// src: (k, ld) rows and mul: (ld,), both pointing at column 0 after a left margin of k - 1
// zeros, 0 from column Wv on; dst: (Wx,) padded input row.
template <typename T, int S, int V, bool MUL>
void scatter_row(const Geometry& geo, const T* __restrict__ src, const T* __restrict__ mul,
                 int64_t ld, int64_t Wv, int64_t Wx, T* __restrict__ dst) {
  const int64_t k = geo.k;
  if constexpr (S == 1) {
    for (int64_t tb = 0; tb < Wx; tb += V) {
      Vec<T, V> acc = load<T, V>(dst + tb);
      for (int64_t kx = 0; kx < k; ++kx) {
        if constexpr (MUL) {
          acc += load<T, V>(src + kx * ld + tb - kx) * load<T, V>(mul + tb - kx);
        } else {
          acc += load<T, V>(src + kx * ld + tb - kx);
        }
      }
      store<T, V>(dst + tb, acc);
    }
  } else {
    const int64_t s = geo.s;
    for (int64_t kx = 0; kx < k; ++kx) {
      for (int64_t j = 0; j < Wv; ++j) {
        dst[j * s + kx] += MUL ? src[kx * ld + j] * mul[j] : src[kx * ld + j];
      }
    }
  }
}

// Backward: task (b, g, band of output rows). Recomputes each row's softmax, then
//   dw[n][j] = sum_c gy[c][j] x_c[p(n, j)],            grad_x_c[p(n, j)] += w[n][j] gy[c][j],
//   dlogit = w * (dw - sum_n w dw),  grad_q[j] = sum_n dlogit dphi/dq,
//   grad_key[p(n, j)] += dlogit dphi/dk,  grad_prior[n] += sum_j dlogit.
// Scatters go to zero-padded band buffers, added to grad_x / grad_key at the end of the task;
// bands of one parity touch disjoint input rows, so each parity runs in parallel without races.
template <typename T, int PHI, int S, int V>
void backward_kernel(const Geometry& geo, const T* gy, const T* x, const T* query, const T* key,
                     const T* prior, T* gx, T* gq, T* gkey, double* gprior_parts, int64_t band) {
  const int64_t C = geo.C, H = geo.H, W = geo.W, G = geo.G, k = geo.k, r = geo.r;
  const int64_t Ho = geo.Ho, Wo = geo.Wo, kk = k * k, m = geo.m;
  const int64_t s = S > 0 ? S : geo.s;
  const int64_t Wv = (Wo + V - 1) / V * V;
  const int64_t Wx = (std::max(W + 2 * r, (Wv - 1) * s + k) + V - 1) / V * V;
  const int64_t LM = k - 1, ld = LM + Wx;  // left margin and row stride of e, d and gyp
  const int64_t bands = (Ho + band - 1) / band, per_parity = (bands + 1) / 2;
  const int64_t rows = (band - 1) * s + k;
  const PaddedRows pr(geo, Wx);
  const int64_t pl = pr.len;
  for (int64_t parity = 0; parity < std::min<int64_t>(2, bands); ++parity) {  // 1 band: 1 phase
    at::parallel_for(0, geo.B * G * per_parity, geo.grain(band), [&](int64_t begin, int64_t end) {
      std::vector<T> scratch(
          (2 * kk + m) * ld + (3 + k) * Wv + (m + 1) * rows * (pl + Wx) + kk * V, T(0));
      T* e = scratch.data() + LM;  // (k*k, ld): weights; columns -LM..-1 and >= Wv stay 0
      T* d = e + kk * ld;          // (k*k, ld): dw, then dlogit * dphi/dk
      T* gyp = d + kk * ld;        // (m, ld): grad_y rows, 0 beyond Wo
      T* inv = gyp - LM + m * ld;  // (Wv,)
      T* q = inv + Wv;             // (Wv,)
      T* gqv = q + Wv;             // (Wv,)
      T* colmask = gqv + Wv;       // (k, Wv)
      T* kp = colmask + k * Wv;    // (rows, pl) padded key rows of the band (layout pr)
      T* xp = kp + rows * pl;      // (m, rows, pl) padded x rows
      T* gkp = xp + m * rows * pl; // (rows, Wx) grad_key of the band, plain padded rows
      T* gxp = gkp + rows * Wx;    // (m, rows, Wx) grad_x of the band
      T* gpv = gxp + m * rows * Wx;  // (k*k, V) grad_prior of the band, per lane
      fill_column_mask(geo, Wv, colmask);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t t = 2 * (task % per_parity) + parity, bg = task / per_parity;
        if (t >= bands) continue;
        const int64_t g = bg % G, b = bg / G, c0 = g * m, mc = geo.channel_end(g) - c0;
        const int64_t i0 = t * band, i1 = std::min(Ho, i0 + band), top = i0 * s - r;
        std::fill(kp, kp + (m + 1) * rows * (pl + Wx), T(0));
        for (int64_t rr = 0; rr < rows; ++rr) {
          const int64_t in_row = top + rr;
          if (in_row < 0 || in_row >= H) continue;
          pr.copy(kp + rr * pl, key + (bg * H + in_row) * W, W);
          for (int64_t cl = 0; cl < mc; ++cl) {
            pr.copy(xp + (cl * rows + rr) * pl, x + ((b * C + c0 + cl) * H + in_row) * W, W);
          }
        }
        std::fill(gpv, gpv + kk * V, T(0));
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t ky0 = geo.ky0(i), ky1 = geo.ky1(i), rr0 = (i - i0) * s;
          const int64_t n0 = ky0 * k, n1 = ky1 * k;
          std::memcpy(q, query + (bg * Ho + i) * Wo, Wo * sizeof(T));
          softmax_block<T, PHI, V>(geo, ky0, ky1, q, kp + rr0 * pl, prior + g * kk, colmask, pr,
                                   Wv, ld, e, inv);
          for (int64_t n = n0; n < n1; ++n) {
            for (int64_t jb = 0; jb < Wv; jb += V) {
              store<T, V>(e + n * ld + jb, load<T, V>(e + n * ld + jb) * load<T, V>(inv + jb));
            }
          }
          for (int64_t cl = 0; cl < mc; ++cl) {
            std::memcpy(gyp + cl * ld, gy + ((b * C + c0 + cl) * Ho + i) * Wo, Wo * sizeof(T));
          }
          // dw, accumulated over the channels in registers, kNeighbourBlock neighbours at a time
          // (they share each load of grad_y; the last block repeats n1 - 1 and stores it once).
          for (int64_t nb = n0; nb < n1; nb += kNeighbourBlock) {
            const T* xs[kNeighbourBlock];
            for (int64_t u = 0; u < kNeighbourBlock; ++u) {
              const int64_t n = std::min(nb + u, n1 - 1);
              xs[u] = xp + (rr0 + n / k) * pl + pr.koff[n % k];
            }
            for (int64_t jb = 0; jb < Wv; jb += V) {
              Vec<T, V> acc[kNeighbourBlock] = {};
              for (int64_t cl = 0; cl < mc; ++cl) {
                const Vec<T, V> gyv = load<T, V>(gyp + cl * ld + jb);
                for (int64_t u = 0; u < kNeighbourBlock; ++u) {
                  acc[u] += gyv * load<T, V>(xs[u] + cl * rows * pl + jb);
                }
              }
              for (int64_t u = 0; u < kNeighbourBlock && nb + u < n1; ++u) {
                store<T, V>(d + (nb + u) * ld + jb, acc[u]);
              }
            }
          }
          // grad_x += w * gy, scattered kernel row by kernel row.
          for (int64_t cl = 0; cl < mc; ++cl) {
            for (int64_t ky = ky0; ky < ky1; ++ky) {
              scatter_row<T, S, V, true>(geo, e + ky * k * ld, gyp + cl * ld, ld, Wv, Wx,
                                         gxp + (cl * rows + rr0 + ky) * Wx);
            }
          }
          // softmax backward, grad_q, grad_prior, and dlogit * dphi/dk into d.
          for (int64_t jb = 0; jb < Wv; jb += V) {
            Vec<T, V> dot = {};
            for (int64_t n = n0; n < n1; ++n) {
              dot += load<T, V>(e + n * ld + jb) * load<T, V>(d + n * ld + jb);
            }
            const Vec<T, V> qv = load<T, V>(q + jb);
            Vec<T, V> gq_acc = {};
            for (int64_t n = n0; n < n1; ++n) {
              const int64_t ky = n / k, kx = n % k;
              const Vec<T, V> w = load<T, V>(e + n * ld + jb);
              const Vec<T, V> dlogit = w * (load<T, V>(d + n * ld + jb) - dot);
              Vec<T, V> dq, dk;
              phi_grad_vec<PHI>(qv, load<T, V>(kp + (rr0 + ky) * pl + pr.koff[kx] + jb), dq, dk);
              gq_acc += dlogit * dq;
              store<T, V>(d + n * ld + jb, dlogit * dk);
              store<T, V>(gpv + n * V, load<T, V>(gpv + n * V) + dlogit);
            }
            store<T, V>(gqv + jb, gq_acc);
          }
          std::memcpy(gq + (bg * Ho + i) * Wo, gqv, Wo * sizeof(T));
          for (int64_t ky = ky0; ky < ky1; ++ky) {
            scatter_row<T, S, V, false>(geo, d + ky * k * ld, nullptr, ld, Wv, Wx,
                                        gkp + (rr0 + ky) * Wx);
          }
        }
        for (int64_t n = 0; n < kk; ++n) {  // this task's own slot, summed by the caller
          double lanes = 0.0;
          for (int64_t jj = 0; jj < V; ++jj) lanes += static_cast<double>(gpv[n * V + jj]);
          gprior_parts[(bg * bands + t) * kk + n] = lanes;
        }
        for (int64_t rr = 0; rr < rows; ++rr) {
          const int64_t in_row = top + rr;
          if (in_row < 0 || in_row >= H) continue;
          T* gkrow = gkey + (bg * H + in_row) * W;
          for (int64_t col = 0; col < W; ++col) gkrow[col] += gkp[rr * Wx + r + col];
          for (int64_t cl = 0; cl < mc; ++cl) {
            T* gxrow = gx + ((b * C + c0 + cl) * H + in_row) * W;
            const T* src = gxp + (cl * rows + rr) * Wx + r;
            for (int64_t col = 0; col < W; ++col) gxrow[col] += src[col];
          }
        }
      }
    });
  }
}

void check_inputs(const at::Tensor& x, const at::Tensor& query, const at::Tensor& key,
                  const at::Tensor& prior, int64_t kernel_size, int64_t stride) {
  TORCH_CHECK(kernel_size >= 1 && kernel_size % 2 == 1, "kernel_size must be odd and >= 1");
  TORCH_CHECK(stride >= 1, "stride must be >= 1");
  for (const at::Tensor* t : {&x, &query, &key, &prior}) {
    TORCH_CHECK(t->device().is_cpu(), "fused_cpu runs on CPU tensors only");
    TORCH_CHECK(t->is_contiguous(), "fused_cpu kernels expect contiguous tensors");
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), "all inputs must share x's dtype");
  }
}

template <int V>
using Int = std::integral_constant<int, V>;

// Calls fn(Int<PHI>, Int<S>) with compile-time phi and stride (S = 1, or 0 for a runtime stride).
template <typename F>
void dispatch_phi_stride(int64_t phi, int64_t stride, F&& fn) {
  auto with_phi = [&](auto phi_tag) {
    if (stride == 1) {
      fn(phi_tag, Int<1>{});
    } else {
      fn(phi_tag, Int<0>{});
    }
  };
  switch (phi) {
    case kSqdiff: with_phi(Int<kSqdiff>{}); break;
    case kAbsdiff: with_phi(Int<kAbsdiff>{}); break;
    case kMult: with_phi(Int<kMult>{}); break;
    default: TORCH_CHECK(false, "phi code must be 0 (sqdiff), 1 (absdiff) or 2 (mult), got ", phi);
  }
}

}  // namespace

// y = local_relation(x, query, key, prior); all contiguous, same dtype (float32/float64).
at::Tensor fused_forward(const at::Tensor& x, const at::Tensor& query, const at::Tensor& key,
                         const at::Tensor& prior, int64_t kernel_size, int64_t stride,
                         int64_t phi) {
  check_inputs(x, query, key, prior, kernel_size, stride);
  const Geometry geo(x, key, kernel_size, stride);
  at::Tensor y = at::empty({geo.B, geo.C, geo.Ho, geo.Wo}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lrbench_fused_cpu_forward", [&] {
    dispatch_phi_stride(phi, stride, [&](auto P, auto S) {
      constexpr int PV = decltype(P)::value, SV = decltype(S)::value;
      const scalar_t* args[] = {x.const_data_ptr<scalar_t>(), query.const_data_ptr<scalar_t>(),
                                key.const_data_ptr<scalar_t>(), prior.const_data_ptr<scalar_t>()};
      // Register block of output columns: 8 for short rows (7x7 maps), else 16.
      if (geo.Wo <= 8) {
        forward_kernel<scalar_t, PV, SV, 8>(geo, args[0], args[1], args[2], args[3],
                                            y.data_ptr<scalar_t>());
      } else {
        forward_kernel<scalar_t, PV, SV, 16>(geo, args[0], args[1], args[2], args[3],
                                             y.data_ptr<scalar_t>());
      }
    });
  });
  return y;
}

// Gradients (x, query, key, prior) of sum(grad_y * y).
std::vector<at::Tensor> fused_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                       const at::Tensor& query, const at::Tensor& key,
                                       const at::Tensor& prior, int64_t kernel_size,
                                       int64_t stride, int64_t phi) {
  check_inputs(x, query, key, prior, kernel_size, stride);
  TORCH_CHECK(grad_y.is_contiguous() && grad_y.scalar_type() == x.scalar_type(),
              "grad_y must be contiguous with x's dtype");
  const Geometry geo(x, key, kernel_size, stride);
  TORCH_CHECK(grad_y.sizes() == at::IntArrayRef({geo.B, geo.C, geo.Ho, geo.Wo}),
              "grad_y must have the output's shape");
  // Bands of output rows; band * s >= k - s makes bands of one parity touch disjoint input rows.
  const int64_t band = std::max(kForwardBand, (geo.k - 1) / geo.s);
  const int64_t bands = (geo.Ho + band - 1) / band;
  at::Tensor gx = at::zeros_like(x);
  at::Tensor gq = at::empty_like(query);
  at::Tensor gkey = at::zeros_like(key);
  at::Tensor gprior_parts = at::zeros({geo.B, geo.G, bands, geo.k * geo.k},
                                      x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lrbench_fused_cpu_backward", [&] {
    dispatch_phi_stride(phi, stride, [&](auto P, auto S) {
      constexpr int PV = decltype(P)::value, SV = decltype(S)::value;
      const scalar_t* args[] = {grad_y.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                query.const_data_ptr<scalar_t>(), key.const_data_ptr<scalar_t>(),
                                prior.const_data_ptr<scalar_t>()};
      scalar_t* grads[] = {gx.data_ptr<scalar_t>(), gq.data_ptr<scalar_t>(),
                           gkey.data_ptr<scalar_t>()};
      if (geo.Wo <= 8) {
        backward_kernel<scalar_t, PV, SV, 8>(geo, args[0], args[1], args[2], args[3], args[4],
                                             grads[0], grads[1], grads[2],
                                             gprior_parts.data_ptr<double>(), band);
      } else {
        backward_kernel<scalar_t, PV, SV, 16>(geo, args[0], args[1], args[2], args[3], args[4],
                                              grads[0], grads[1], grads[2],
                                              gprior_parts.data_ptr<double>(), band);
      }
    });
  });
  at::Tensor gprior = gprior_parts.sum(at::IntArrayRef{0, 2}).view({geo.G, geo.k, geo.k}).to(x.scalar_type());
  return {gx, gq, gkey, gprior};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("forward", &fused_forward, "fused local relation forward (CPU)");
  module.def("backward", &fused_backward, "fused local relation backward (CPU)");
}
