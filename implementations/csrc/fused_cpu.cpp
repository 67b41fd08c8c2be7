// Fused CPU kernels of the local relation op (SPEC.md section 1).
//
// Hu, Zhang, Xie, Lin, "Local Relation Networks for Image Recognition", ICCV 2019,
// arXiv:1904.11491, equation (2): y(p') = sum_p w(p', p) x(p), with
// w = softmax_p(phi(q(p'), k(p)) + prior(p - p')) over the in-image k x k neighbours of p'.
//
// Tasks: one (batch b, group g, band of output rows; see choose_band and line_band). The band's
// input rows of x (the m channels of g, or of g's chunk: GroupChunks) and of key are copied into
// a per-thread scratch, zero-padded by r columns on each side, so the inner loops need no bounds
// checks; the next task's rows are prefetched meanwhile. For each block of V output columns of a row, each
// weight is computed once in registers (logit, shift, exp) and used at once for up to
// kRegChannels channels whose accumulators stay in registers (weights_pass). The shift is the
// group's largest prior value when phi <= 0 (no pass for the maximum; a block whose sum
// underflows is redone with the logits' maximum), else the maximum; the kernels take the prior
// less that value (shifted_priors), so the common shift is 0 and costs nothing. Nothing of size
// k*k*H*W is written to memory: the forward keeps each output pixel's shift and 1 / sum (stats)
// and the backward recomputes the weights from them in one pass.
//
// Borders: out-of-image neighbours get the logit -inf through an additive column mask (and only
// the image's kernel rows are visited), so their weights are exactly 0 and they are excluded
// from the softmax, not zero-padded into it; their values are read from the zero padding.
//
// Backward races: the gradients of x and key are scatters from output pixels to input pixels.
// They go to the task's band buffers in gather form (stride 1: over padded input columns; stride
// s > 1: per phase of a phase-split row, scatter_phases), so no two writes of one loop collide,
// and are stored (first writer) or added to grad_x / grad_key at the end of the task (grad_x:
// of the chunk's last task on the thread, GroupChunks). Bands are at least (k - 1) / s rows
// high, so two bands of the same parity never touch the same input row: even bands run in
// parallel and store, then odd bands, which add the rows they share. The prior's gradient is
// summed per task into its own slot and reduced by the caller.
//
// Memory formats: x, grad_y, y and grad_x may be contiguous or channels_last; channels_last rows
// are read and written pixel by pixel (a pixel's group channels share a cache line), the pixel
// kPixelsAhead columns ahead prefetched (x read, grad_x written), and the tasks of one band run
// group after group (TaskOrder), a chunk of groups sharing one copy of x's rows and, in the
// backward, one store of grad_x's (GroupChunks), so that each line is read and written whole.
//
// Vectors: GCC/Clang vector extensions (compiled with -O3 -march=native by fused_cpu.py), and
// AVX-512 masked stores for partial blocks where the compiler targets AVX-512.

#include <torch/extension.h>

#include <ATen/EmptyTensor.h>
#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>
#define LRBENCH_MASKED_STORES 1
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
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

// Element strides of a (B, C, H, W) tensor: x, y, grad_y and grad_x may be contiguous (NCHW) or
// channels_last (NHWC, w stride C), read and written in place, without a layout copy; query and
// key (B, G, ., .) may have any strides (only read).
struct Strides {
  int64_t b, c, h, w;
  explicit Strides(const at::Tensor& t)
      : b(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
  // Offset of element (b, c, h, 0): the start of one row of one channel.
  int64_t row(int64_t bi, int64_t ci, int64_t hi) const { return bi * b + ci * c + hi * h; }
};

// channels_last rows are read and written pixel by pixel, half a cache line or less of each pixel
// for one group: the hardware prefetchers do not run ahead of that pattern, so the kernels ask for
// the pixel kPixelsAhead columns ahead themselves (on the stem's backward, 1 thread: 224 -> 195 ms,
// x read and grad_x written together; 16 to 32 pixels measured alike, 8 less).
constexpr int64_t kPixelsAhead = 32;

// Asks for the cache line of p + ahead elements (WRITE: to write it), the address formed as an
// integer, as it may lie past the tensor (a prefetch never faults).
template <bool WRITE, typename T>
inline void prefetch_ahead(const T* p, int64_t ahead) {
  const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(p) + ahead * sizeof(T);
  __builtin_prefetch(reinterpret_cast<const void*>(address), WRITE ? 1 : 0, 3);
}

// n values from src (value j at src[j * stride]) to dst: one memcpy where they are adjacent.
template <typename T>
inline void copy_strided(T* __restrict__ dst, const T* __restrict__ src, int64_t n, int64_t stride) {
  if (stride == 1) {
    std::memcpy(dst, src, n * sizeof(T));
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = src[j * stride];
  }
}

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

  // Writes the W input values of one row (column w at src[w * sw]); the padding positions are
  // never written (stay 0).
  template <typename T>
  void copy(T* __restrict__ dst, const T* __restrict__ src, int64_t W, int64_t sw = 1) const {
    if (s == 1) {
      copy_strided(dst + r, src, W, sw);
    } else if (s == 2) {  // pair of columns by pair, in one pass over src (unpad_row's inverse):
      // one pass per phase, each reading every other column, made NCHW forwards at stride 2
      // 1.16-1.36x as long (AMD EPYC, 2 threads).
      T* __restrict__ even = dst;       // padded columns 2u
      T* __restrict__ odd = dst + Wp;   // padded columns 2u + 1
      int64_t col = 0;
      if (r % 2 == 1 && W > 0) odd[r / 2] = src[sw * col++];  // from here on col + r is even
      const int64_t pairs = (W - col) / 2, u0 = (col + r) / 2;
      for (int64_t u = 0; u < pairs; ++u) {
        even[u0 + u] = src[(col + 2 * u) * sw];
        odd[u0 + u] = src[(col + 2 * u + 1) * sw];
      }
      if (col + 2 * pairs < W) even[u0 + pairs] = src[(W - 1) * sw];
    } else {
      copy_pixels(dst, 0, src, W, sw, 0, 1);
    }
  }

  // The same for mc channels of a row, pixel by pixel (for channels_last, where each pixel's
  // channels are adjacent: one cache line read once, not once per channel): channel cl of input
  // column w is src[w * sw + cl * sc] and goes to dst[cl * cstride + position of w]. The pixel
  // kPixelsAhead columns ahead (in the next row past the end: channels_last rows follow each
  // other) is prefetched. The pixels go in the row's order, each to its phase (phase by phase,
  // reading every other pixel, and key split likewise: channels_last forwards at stride 2 took
  // 1.13-1.24x as long).
  template <typename T>
  void copy_pixels(T* __restrict__ dst, int64_t cstride, const T* __restrict__ src, int64_t W,
                   int64_t sw, int64_t sc, int64_t mc) const {
    int64_t phase = r % s, u = r / s;  // padded column t = w + r = u*s + phase
    for (int64_t w = 0; w < W; ++w) {
      const T* __restrict__ pixel = src + w * sw;
      for (int64_t o = 0; o < (mc - 1) * sc + 1; o += 64 / sizeof(T)) {  // its channels' lines
        prefetch_ahead<false>(pixel, kPixelsAhead * sw + o);
      }
      prefetch_ahead<false>(pixel, kPixelsAhead * sw + (mc - 1) * sc);
      T* __restrict__ out = dst + phase * Wp + u;
      for (int64_t cl = 0; cl < mc; ++cl) out[cl * cstride] = pixel[cl * sc];
      if (++phase == s) phase = 0, ++u;
    }
  }
};

// key and query are read through their strides: the projections hand them over as they come
// out of the 1x1 convolutions (views of one (B, 2G, H, W) output at stride 1; channels_last when
// x is). A layout copy of each first, in the forward and again in the backward, made the kernels
// 0.96-1.01x as fast at LR-Net-50's layers (scripts/time_fused_cpu.py --key-query copied), and
// in a training step it is two more tensors a layer.
// Row `hi` of group g of batch b of key (zero-padded, layout pr), W input columns.
template <typename T>
inline void copy_key_row(const PaddedRows& pr, T* dst, const T* key, const Strides& ks,
                         int64_t b, int64_t g, int64_t hi, int64_t W) {
  pr.copy(dst, key + ks.row(b, g, hi), W, ks.w);
}

// Row i of group g of batch b of query: Wo values to dst.
template <typename T>
inline void read_query_row(T* dst, const T* query, const Strides& qs, int64_t b, int64_t g,
                           int64_t i, int64_t Wo) {
  copy_strided(dst, query + qs.row(b, g, i), Wo, qs.w);
}

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

// Stores the first nv lanes of v at dst[jj * stride]; a partial block at stride 1 with one
// masked store where AVX-512 has them (nothing past dst[nv - 1] is touched).
template <typename T, int V>
inline void store_columns(T* dst, int64_t stride, const Vec<T, V>& v, int64_t nv) {
  if (nv == V && stride == 1) {
    store<T, V>(dst, v);
    return;
  }
#ifdef LRBENCH_MASKED_STORES
  if (stride == 1) {
    if constexpr (std::is_same_v<T, float> && V == 16) {
      return _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << nv) - 1), v);
    } else if constexpr (std::is_same_v<T, float> && V == 8) {
      return _mm256_mask_storeu_ps(dst, static_cast<__mmask8>((1u << nv) - 1), v);
    } else if constexpr (std::is_same_v<T, double> && V == 8) {
      return _mm512_mask_storeu_pd(dst, static_cast<__mmask8>((1u << nv) - 1), v);
    }
  }
#endif
  for (int64_t jj = 0; jj < nv; ++jj) dst[jj * stride] = v[jj];
}

#ifdef LRBENCH_MASKED_STORES
// Transposes the 16 x 16 floats of v in place (lane j of v[i] -> lane i of v[j]): pairs within
// 128-bit lanes, then quadruples, then the 128-bit lanes across four vectors (64 shuffles).
inline void transpose16(__m512 v[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // u[i + k], lane L: rows i..i+3 at column 4L + k
    u[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {  // column 4L + k: lane L of u[k], u[4 + k], u[8 + k], u[12 + k]
    const __m512 a = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x44);
    const __m512 b = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xEE);
    const __m512 c = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x44);
    const __m512 d = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xEE);
    v[k] = _mm512_shuffle_f32x4(a, c, 0x88);
    v[4 + k] = _mm512_shuffle_f32x4(a, c, 0xDD);
    v[8 + k] = _mm512_shuffle_f32x4(b, d, 0x88);
    v[12 + k] = _mm512_shuffle_f32x4(b, d, 0xDD);
  }
}
#endif

template <typename T, int V>
inline Vec<T, V> splat(T value) {
  Vec<T, V> v = {};
  return v + value;
}

// exp(f) for |f| <= ln2/2 (about): degree-5 polynomial fitted for the least largest relative
// error on that interval (Lawson's iteration in numpy, 2026-12-07: 7.6e-8 before its
// coefficients are rounded to float, 1.4e-7 after, in exact arithmetic; the degree-6 Taylor
// polynomial it replaced 2.5e-7), one multiply-add less.
template <int V>
inline Vec<float, V> exp_poly(Vec<float, V> f) {
  Vec<float, V> p = splat<float, V>(8.30126833e-3f);
  p = p * f + 4.19158377e-2f;
  p = p * f + 1.66675225e-1f;
  p = p * f + 4.99988914e-1f;
  p = p * f + 9.99999702e-1f;
  return p * f + 1.00000012f;
}

// f = x - n * ln2, ln2 split in a high part exact in float and a low part (Cody and Waite).
template <int V>
inline Vec<float, V> reduce_ln2(Vec<float, V> x, Vec<float, V> n) {
  return x - n * 0.693359375f + n * 2.12194440e-4f;
}

#ifdef LRBENCH_MASKED_STORES
// The float exp below with AVX-512's own instructions (16 or, with VL, 8 lanes): n rounded by
// vrndscaleps, 2^n applied by vscalefps, and the lanes below kExpFloor (-inf included) zeroed by
// that instruction's mask, instead of clamping x and building 2^n's bits in integer lanes: 11
// vector instructions instead of 16, of the 29 the forward's pass took per weight vector (logit
// 4, exp 16, sum 1, 8 multiply-adds; 23 now, with shifted_priors' logit of 3). On an AMD EPYC
// that pass runs at about two vector instructions a cycle whatever their kind
// (docs/implementations.md, "Where the forward's time goes"), so each one left out shortens it.
constexpr float kExpFloor = -87.0f;  // exp(-87) = 1.6e-38 > 2^-126: no result is subnormal

template <int V>
inline Vec<float, V> exp_avx512(Vec<float, V> x) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const Vec<float, V> n = [&] {
    if constexpr (V == 16) return Vec<float, V>(_mm512_roundscale_ps(x * 1.44269504088896341f, kRound));
    else return Vec<float, V>(_mm256_roundscale_ps(x * 1.44269504088896341f, kRound));
  }();
  const Vec<float, V> p = exp_poly<V>(reduce_ln2<V>(x, n));
  // Kept: x >= kExpFloor, or NaN (not less than the floor when unordered), so NaN stays NaN.
  if constexpr (V == 16) {
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpFloor), _CMP_NLT_UQ);
    return _mm512_maskz_scalef_ps(keep, p, n);
  } else {
    const __mmask8 keep = _mm256_cmp_ps_mask(x, _mm256_set1_ps(kExpFloor), _CMP_NLT_UQ);
    return _mm256_maskz_scalef_ps(keep, p, n);
  }
}
#endif

// exp of V values, exactly 0 for -inf. float: exp(x) = 2^n * exp(f), n = round(x / ln2),
// f = x - n ln2 (exp_poly), relative error < 3e-7 in float32 (2.3e-7 on [-87, 0] emulated in
// numpy); x below about -87 (n <= -126, results below about 2^-125; with AVX-512 x below
// kExpFloor) gives 0, so no subnormal reaches the multiply-adds (2^-126 times exp(f) < 1 would
// be one). double: std::exp per element (float64 is for checking, not for speed). AVX: the
// AVX-512 form where the CPU has it (the forward's; the backward's passes measured no faster
// with it, weights_pass). The two forms round n differently (one rounding or two) and so may
// differ by an ulp.
template <typename T, int V, bool AVX = true>
inline Vec<T, V> exp_vec(Vec<T, V> x) {
  if constexpr (std::is_same_v<T, double>) {
    for (int jj = 0; jj < V; ++jj) x[jj] = std::exp(x[jj]);
    return x;
  } else {
#ifdef LRBENCH_MASKED_STORES
    if constexpr (AVX && (V == 16 || V == 8)) return exp_avx512<V>(x);
#endif
    using IntVec = Vec<int32_t, V>;
    const Vec<float, V> lo = splat<float, V>(-100.0f);
    x = x < lo ? lo : x;
    const Vec<float, V> n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round
    const Vec<float, V> p = exp_poly<V>(reduce_ln2<V>(x, n));
    IntVec biased = __builtin_convertvector(n, IntVec) + 127;
    const IntVec zero = {}, one = zero + 1;
    biased = biased <= one ? zero : biased;  // n <= -126: 0, not a subnormal
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

// Elements of T in a cache line, and n rounded up to whole lines.
template <typename T>
constexpr int64_t kLineElems = 64 / sizeof(T);
template <typename T>
constexpr int64_t whole_lines(int64_t n) {
  return (n + kLineElems<T> - 1) / kLineElems<T> * kLineElems<T>;
}

// A thread's zero-filled scratch whose data() starts a cache line, so that the rows the kernels
// lay out at multiples of whole_lines from it hold their vectors of V columns without straddling
// two lines (a straddling load or store costs about two).
template <typename T>
class Scratch {
 public:
  explicit Scratch(int64_t n) : storage_(n + kLineElems<T>, T(0)) {
    const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(storage_.data());
    data_ = storage_.data() + (64 - address % 64) % 64 / sizeof(T);
  }
  Scratch(const Scratch&) = delete;  // data_ points into this object's own storage
  Scratch& operator=(const Scratch&) = delete;
  T* data() { return data_; }

 private:
  std::vector<T> storage_;
  T* data_;
};

// Asks for the cache lines of n contiguous elements at p (to L2: the data is read soon, not now).
template <typename T>
inline void prefetch_span(const T* p, int64_t n) {
  constexpr int64_t kLine = 64 / sizeof(T);
  for (int64_t o = 0; o < n; o += kLine) __builtin_prefetch(p + o, 0, 2);
}

// Prefetches input rows top + [r0, r1) of x (the channels [c0, c0 + mc) of batch b, when its
// rows are contiguous) and of key (every line group g's row spans: where its pixels lie a line
// or more apart, lines of the other groups too, which their tasks read next in channels_last; one
// line per pixel instead measured 0.96-1.00x as fast at res3.0 to res5), so that the next task's
// copy of its band overlaps with this task's arithmetic instead of waiting for memory (mc = 0:
// key only).
template <typename T>
void prefetch_band(const Geometry& geo, const T* x, const Strides& xs, const T* key,
                   const Strides& ks, int64_t g, int64_t b, int64_t c0, int64_t mc, int64_t top,
                   int64_t r0, int64_t r1) {
  for (int64_t rr = r0; rr < r1; ++rr) {
    const int64_t in_row = top + rr;
    if (in_row < 0 || in_row >= geo.H) continue;
    prefetch_span(key + ks.row(b, g, in_row), (geo.W - 1) * ks.w + 1);
    if (mc == 0) continue;  // x already copied
    const T* row = x + xs.row(b, c0, in_row);
    if (xs.w == 1) {
      for (int64_t cl = 0; cl < mc; ++cl) prefetch_span(row + cl * xs.c, geo.W);
    } else {  // channels_last: the group's channels of each pixel
      for (int64_t w = 0; w < geo.W; ++w) prefetch_span(row + w * xs.w, (mc - 1) * xs.c + 1);
    }
  }
}

// Output columns held in registers by the fused passes: up to kRegChannels channels of one block
// of V output columns (their accumulators, or their grad_y) stay in registers over the k*k
// neighbours, so each weight is computed once and used for all of them.
constexpr int64_t kRegChannels = 8;

// The target's vector registers, as far as the kernels size their register blocks by them:
// AVX-512's 32 of 64 bytes, AVX2's 16 of 32; 0 elsewhere (NEON, SSE: not measured, sized as for
// AVX-512, which is what every target got before 2026-12-07).
#if defined(__AVX512F__)
constexpr int kVectorRegisters = 32, kRegisterBytes = 64;
#elif defined(__AVX2__)
constexpr int kVectorRegisters = 16, kRegisterBytes = 32;
#else
constexpr int kVectorRegisters = 0, kRegisterBytes = 0;
#endif

// Output columns of the register block on rows longer than 8: one AVX-512 register of floats
// (16), or, with AVX2, one AVX2 register's 8. A block of 16 there takes two of AVX2's 16
// registers per vector, and the passes' vectors (8 channels' accumulators or grad_y', the query,
// the exp's temporaries; the gather's accumulators) no longer fit: the compiler spilled them to
// the stack around every multiply-add. On an AMD EPYC without AVX-512 (CPU family 25), 8 instead
// of 16 made LR-Net-50's wider layers' forwards 3.0-6.0x and backwards 2.3-4.0x as fast
// (scripts/time_fused_cpu.py --against, 2026-12-07; docs/implementations.md).
constexpr int kWideBlock = kRegisterBytes == 32 ? 8 : 16;

// Below this softmax sum, a block shifted by the prior's bound (instead of its true maximum
// logit) is recomputed with the true maximum: with sum >= 2^-40 every weight that the shifted
// exp flushes to 0 (< 2^-125) is below 2^-85 of the sum, so the result is the softmax's.
constexpr float kMinShiftedSum = 0x1p-40f;

// The shift of the softmax of one block of V output columns: the logits' maximum over the image's
// kernel rows [ky0, ky1). kp: padded key row of kernel row 0 at column jb (layout pr); colmask:
// (k, Wv) at column jb.
template <typename T, int PHI, int V>
inline Vec<T, V> max_logit(const Geometry& geo, int64_t ky0, int64_t ky1, Vec<T, V> qv,
                           const T* __restrict__ kp, const T* __restrict__ prior,
                           const T* __restrict__ colmask, const PaddedRows& pr, int64_t Wv) {
  Vec<T, V> mx = splat<T, V>(-std::numeric_limits<T>::infinity());
  for (int64_t ky = ky0; ky < ky1; ++ky) {
    for (int64_t kx = 0; kx < geo.k; ++kx) {
      const Vec<T, V> kv = load<T, V>(kp + ky * pr.len + pr.koff[kx]);
      const Vec<T, V> logit = phi_vec<PHI>(qv, kv) + prior[ky * geo.k + kx]
                              + load<T, V>(colmask + kx * Wv);
      mx = mx > logit ? mx : logit;
    }
  }
  return mx;
}

// The weights of one block of V output columns and what the forward and the backward do with them
// at once, neighbour by neighbour over the image's kernel rows:
//   e[n] = exp(logit[n] - shift)  (exactly 0 outside the image), stored in e (row stride ld) when
//   e is not null, and returned summed over n;
//   FORWARD: acc[c] += e[n] * x_c[n]  (the aggregation of NC channels);
//   BACKWARD: dw'[n] = sum_c gy'[c] * x_c[n], stored in d (row stride ld), and acc[0] +=
//   e[n] * dw'[n]  (the softmax backward's dot product).
// UNSHIFTED: prior already has the shift taken off (shift is not used), one vector instruction
// less per weight. FORWARD: exp_vec's AVX-512 instructions where the CPU has them (forwards
// 1.03-1.13x as fast with them); the backward keeps the portable ones: with the AVX-512 ones it
// measured 0.94-1.00x as fast as before, and against them the portable ones were faster in 11
// and 12 of LR-Net-50's 16 layer shapes and formats in two runs (docs/implementations.md).
// xc: channel 0 of the padded x rows at kernel row 0 and column jb; channel c at xc + c * cstride.
template <typename T, int PHI, int V, int NC, bool FORWARD, bool UNSHIFTED = false>
inline Vec<T, V> weights_pass(const Geometry& geo, int64_t ky0, int64_t ky1, Vec<T, V> qv,
                              Vec<T, V> shift, const T* __restrict__ kp,
                              const T* __restrict__ prior, const T* __restrict__ colmask,
                              const PaddedRows& pr, int64_t Wv, const T* __restrict__ xc,
                              int64_t cstride, const Vec<T, V>* gyv, Vec<T, V>* acc,
                              T* __restrict__ e, T* __restrict__ d, int64_t ld) {
  const int64_t k = geo.k;
  Vec<T, V> sum = {};
  for (int64_t ky = ky0; ky < ky1; ++ky) {
    for (int64_t kx = 0; kx < k; ++kx) {
      const int64_t n = ky * k + kx, off = ky * pr.len + pr.koff[kx];
      const Vec<T, V> logit = phi_vec<PHI>(qv, load<T, V>(kp + off)) + prior[n]
                              + load<T, V>(colmask + kx * Wv);
      const Vec<T, V> w = exp_vec<T, V, FORWARD>(UNSHIFTED ? logit : logit - shift);
      sum += w;
      if (e != nullptr) store<T, V>(e + n * ld, w);
      if constexpr (FORWARD) {
        for (int c = 0; c < NC; ++c) acc[c] += w * load<T, V>(xc + c * cstride + off);
      } else {
        Vec<T, V> part[2] = {};  // two chains hide the multiply-adds' latency
        for (int c = 0; c < NC; ++c) part[c % 2] += gyv[c] * load<T, V>(xc + c * cstride + off);
        const Vec<T, V> dw = part[0] + part[1];
        store<T, V>(d + n * ld, dw);
        acc[0] += w * dw;
      }
    }
  }
  return sum;
}

// Whether some lane j < nv of a block's softmax sum is below kMinShiftedSum.
template <typename T, int V>
inline bool underflowed(const Vec<T, V>& sum, int64_t nv) {
  for (int64_t jj = 0; jj < nv; ++jj) {
    if (sum[jj] < T(kMinShiftedSum)) return true;
  }
  return false;
}

// The largest prior logit of a group: with phi <= 0 (sqdiff, absdiff) no logit exceeds it, so it
// is a valid softmax shift (exp never overflows) without a pass for the maximum.
template <typename T>
T prior_bound(const T* prior, int64_t kk) {
  return *std::max_element(prior, prior + kk);
}

// The shifted weights of one block. Its logits are taken with the group's prior less the prior's
// bound (shifted_priors), so the shift is relative to that bound: 0 (the bound itself) when
// phi <= 0, else (or when the bound underflowed some lane's sum) the logits' maximum. Calls
// pass(unshifted, shift), which returns the sum over n (unshifted: std::true_type for the
// shift 0, which the pass need not subtract), and returns {shift, sum}.
template <typename T, int PHI, int V, typename Pass>
inline std::pair<Vec<T, V>, Vec<T, V>> shifted_weights(
    const Geometry& geo, int64_t ky0, int64_t ky1, Vec<T, V> qv, const T* kp,
    const T* shifted_prior, const T* colmask, const PaddedRows& pr, int64_t Wv, int64_t nv,
    Pass&& pass) {
  if constexpr (PHI != kMult) {
    const Vec<T, V> zero = {};
    const Vec<T, V> sum = pass(std::true_type{}, zero);
    if (!underflowed<T, V>(sum, nv)) return {zero, sum};
  }
  const Vec<T, V> shift =
      max_logit<T, PHI, V>(geo, ky0, ky1, qv, kp, shifted_prior, colmask, pr, Wv);
  return {shift, pass(std::false_type{}, shift)};
}

// Each group's prior less its bound (prior_bound), (G, k*k), made once per call: the fused passes
// take it as the prior, so their shifts are relative to the bound, and the forward's common
// shift, the bound itself, is 0 and costs no subtraction. Forward and backward compute every
// logit alike (in float64 their weights then agree to the last bit; in float32 with AVX-512 the
// two passes' exps may differ by an ulp, exp_vec).
template <typename T>
std::vector<T> shifted_priors(const T* prior, int64_t G, int64_t kk) {
  std::vector<T> out(G * kk);
  for (int64_t g = 0; g < G; ++g) {
    const T bound = prior_bound(prior + g * kk, kk);
    for (int64_t n = 0; n < kk; ++n) out[g * kk + n] = prior[g * kk + n] - bound;
  }
  return out;
}

// Channels aggregated together from stored weights (the channels beyond the first kRegChannels):
// they share each load of the weights, and their independent accumulators hide the latency of
// the multiply-adds.
constexpr int64_t kChannelBlock = 4;

// y[c][j] = inv[j] * sum_{ky, kx} e[ky, kx][j] * xp_c[ky][j*s + kx] for the channels of one
// block and the block of V output columns at jb; the sum runs over the image's kernel rows.
// e: (k*k, ld) weights at column jb, 0 outside the image; xcs: kernel row 0 of each channel in
// the padded scratch (layout pr) at column jb; ys: output rows at column jb, element j at
// ys[cc][j * ysw] (nullptr: padding channel, not stored); nv: columns of the block inside Wo.
template <typename T, int V>
void aggregate_block(const Geometry& geo, const T* __restrict__ e, int64_t ld,
                     const Vec<T, V>& scale, const T* const* xcs, T* const* ys, int64_t ysw,
                     const PaddedRows& pr, int64_t ky0, int64_t ky1, int64_t nv) {
  const int64_t k = geo.k;
  Vec<T, V> acc[kChannelBlock] = {};
  for (int64_t ky = ky0; ky < ky1; ++ky) {
    for (int64_t kx = 0; kx < k; ++kx) {
      const Vec<T, V> w = load<T, V>(e + (ky * k + kx) * ld);
      for (int64_t cc = 0; cc < kChannelBlock; ++cc) {
        acc[cc] += w * load<T, V>(xcs[cc] + ky * pr.len + pr.koff[kx]);
      }
    }
  }
  for (int64_t cc = 0; cc < kChannelBlock; ++cc) {
    if (ys[cc] != nullptr) store_columns<T, V>(ys[cc], ysw, acc[cc] * scale, nv);
  }
}

// Output rows per task ("band"): the band's input rows are copied once into a zero-padded
// scratch, so taller bands copy fewer rows twice ((band - 1) * s + k input rows for band output
// rows) and, in the backward, add fewer shared rows. kMaxBand rows at most; halved while there
// are fewer than kTasksPerThread tasks a thread (a phase of the backward counts half the bands),
// down to min_band.
constexpr int64_t kMaxBand = 32, kTasksPerThread = 4;
constexpr int64_t kBandLineBytes = 512 * 1024;  // channels_last: see line_band

// channels_last x (and grad_y): the tasks of one band run group after group (TaskOrder), and the
// band is at most as high as keeps its pixels' cache lines of x (about 64 bytes a pixel for a
// pair of groups) within kBandLineBytes, so that they stay in L2 while the groups read them.
int64_t line_band(const Geometry& geo, bool channels_last) {
  if (!channels_last) return kMaxBand;
  const int64_t max_rows = std::max<int64_t>(geo.k, kBandLineBytes / (64 * geo.W));
  return std::max<int64_t>(1, (max_rows - geo.k) / geo.s + 1);
}

int64_t choose_band(const Geometry& geo, int64_t min_band, bool two_phases) {
  const int64_t want = kTasksPerThread * at::get_num_threads();
  int64_t band = kMaxBand;
  while (band / 2 >= min_band) {
    const int64_t bands = (geo.Ho + band - 1) / band;
    const int64_t tasks = geo.B * geo.G * (two_phases ? (bands + 1) / 2 : bands);
    if (tasks >= want) break;
    band /= 2;
  }
  return std::max(band, min_band);
}

// The order of the forward's tasks (b, g, band t). Contiguous x: band fastest (a group's rows
// follow each other). channels_last x: group fastest, so that the tasks after one read the same
// pixels' cache lines (every pixel's channels are adjacent) while they are still cached, instead
// of reading each line once per group from memory.
struct TaskOrder {
  int64_t G, bands;
  bool groups_fastest;
  TaskOrder(const Geometry& geo, int64_t bands_, bool groups_fastest_)
      : G(geo.G), bands(bands_), groups_fastest(groups_fastest_) {}
  std::array<int64_t, 3> split(int64_t task) const {  // {b, g, t}
    if (groups_fastest) return {task / (G * bands), task % G, (task / G) % bands};
    return {task / (G * bands), (task / bands) % G, task % bands};
  }
};

// channels_last x (with m >= kRegChannels): a chunk of consecutive groups shares one copy of the
// band's x rows, made by the first of its tasks on a thread whole pixels at a time (each pixel's
// cache lines read once, in order, instead of half a line a group) and reused by the chunk's
// tasks that follow it there (TaskOrder: group fastest; a chunk cut between two threads' ranges
// is copied by each, correct but twice); in the backward they also share the band's grad_x rows,
// written to grad_x pixel by pixel once the chunk's last task on the thread is done. Up to
// kChunkChannels channels (whole cache lines of a pixel), as many groups as keep each shared
// buffer within kChunkBytes (stem, channels_last, 2 threads: forward 1.28x, backward 1.13x from
// the x copy and 1.10x from grad_x, then 1.07x from 4 groups a chunk instead of 3). Contiguous x,
// and m < kRegChannels (whose register passes read past a group's channels into the next
// group's), have one group a chunk.
constexpr int64_t kChunkBytes = 1536 * 1024, kChunkChannels = 32;

struct GroupChunks {
  int64_t C, m, groups;
  // channel_bytes: one channel's rows in the largest buffer a chunk shares; elem: sizeof(T).
  GroupChunks(const Geometry& geo, bool channels_last, int64_t channel_bytes, int64_t elem)
      : C(geo.C), m(geo.m), groups(1) {
    if (channels_last && geo.m >= kRegChannels) {
      const int64_t most = std::min(geo.G, std::max<int64_t>(1, kChunkChannels / geo.m));
      groups = std::clamp<int64_t>(kChunkBytes / (geo.m * channel_bytes), 1, most);
      // Whole cache lines of a pixel where a group is less than one: no line split between
      // two chunks (read twice, written by two tasks), where C * sizeof(T) is a multiple of 64
      // and the tensor 64-byte aligned (else lines straddle pixels anyway).
      const int64_t per_line = std::max<int64_t>(1, 64 / (geo.m * elem));
      if (groups > per_line) groups -= groups % per_line;
    }
  }
  int64_t chunk(int64_t g) const { return g / groups; }
  int64_t c0(int64_t g) const { return chunk(g) * groups * m; }  // first channel of g's chunk
  int64_t channels(int64_t g) const { return std::min(C, c0(g) + groups * m) - c0(g); }
  int64_t slot(int64_t g) const { return (g % groups) * m; }  // g's channel 0 in the copy
  // Channel slots of the copy: the last group's register passes read kRegChannels of them.
  int64_t slots() const { return (groups - 1) * m + std::max(m, kRegChannels); }
};

// Copies the rows top + [0, rows) of x inside the image (channels [c0, c0 + nch) of batch b) to
// the zero-padded scratch xp (channel slot cl at xp + cl * cstride, rows of pr.len); rows outside
// the image are not written (their kernel rows are never visited). Slots [nch, *dirty) are zeroed,
// so that slots past the copied channels read 0 (*dirty: the slots written so far).
template <typename T>
void copy_band_x(const Geometry& geo, const PaddedRows& pr, const T* x, const Strides& xs,
                 int64_t b, int64_t c0, int64_t nch, int64_t top, int64_t rows, T* xp,
                 int64_t cstride, int64_t* dirty) {
  if (*dirty > nch) std::fill(xp + nch * cstride, xp + *dirty * cstride, T(0));
  *dirty = nch;
  for (int64_t rr = 0; rr < rows; ++rr) {
    const int64_t in_row = top + rr;
    if (in_row < 0 || in_row >= geo.H) continue;
    if (xs.w == 1) {
      for (int64_t cl = 0; cl < nch; ++cl) {
        pr.copy(xp + cl * cstride + rr * pr.len, x + xs.row(b, c0 + cl, in_row), geo.W);
      }
    } else {
      pr.copy_pixels(xp + rr * pr.len, cstride, x + xs.row(b, c0, in_row), geo.W, xs.w, xs.c, nch);
    }
  }
}

// A thread's copy of x for its tasks (per-thread scratch xall, cstride apart): copied again only
// when a task's (batch, band, chunk) differs from the last one's.
template <typename T>
struct ChunkCopy {
  const Geometry& geo;
  const PaddedRows& pr;
  const GroupChunks& chunks;
  const T* x;
  const Strides& xs;
  T* xall;
  int64_t cstride, rows, bands;
  int64_t copied = -1, dirty = 0;  // the key of the copy in xall; its slots written

  int64_t key(int64_t b, int64_t t, int64_t g) const {
    return (b * bands + t) * geo.G + chunks.chunk(g);
  }
  // Group g's channels in the copy ((m, rows, pr.len)), copying band t (rows from top) first when
  // xall holds another one; *fresh: whether it did.
  const T* group(int64_t b, int64_t t, int64_t g, int64_t top, bool* fresh) {
    const int64_t k = key(b, t, g);
    *fresh = k != copied;
    if (*fresh) {
      copy_band_x(geo, pr, x, xs, b, chunks.c0(g), chunks.channels(g), top, rows, xall, cstride,
                  &dirty);
      copied = k;
    }
    return xall + chunks.slot(g) * cstride;
  }
};

// Forward: task (b, g, band of output rows) writes y[b, c, i, :] for the m channels c of group g
// and the rows i of the band, and the softmax statistics of each output pixel (the shift and
// 1 / sum, which the backward reuses instead of recomputing them). The band's input rows of x and
// key, zero-padded by r columns on each side, are copied to a scratch so that the inner loops
// have no bounds: out-of-image neighbours get the logit -inf (weight exactly 0) and read the zero
// padding. Each block of V output columns computes each weight once, in registers, and
// aggregates the first kRegChannels channels with it at once (the others from the stored weights).
template <typename T, int PHI, int S, int V>
void forward_kernel(const Geometry& geo, const T* x, const Strides& xs, const T* query,
                    const Strides& qs, const T* key, const Strides& ks, const T* prior, T* y,
                    const Strides& ys_, T* stats) {
  const int64_t H = geo.H, W = geo.W, G = geo.G, k = geo.k, r = geo.r;
  const int64_t Ho = geo.Ho, Wo = geo.Wo, kk = k * k, m = geo.m;
  const int64_t s = S > 0 ? S : geo.s;
  const int64_t Wv = (Wo + V - 1) / V * V;                  // e's row length, whole blocks
  const PaddedRows pr(geo, std::max(W + 2 * r, (Wv - 1) * s + k));
  const int64_t band = std::min({Ho, choose_band(geo, 1, false), line_band(geo, xs.w != 1)});
  const int64_t bands = (Ho + band - 1) / band;
  const TaskOrder order(geo, bands, xs.w != 1);
  const int64_t rows = (band - 1) * s + k;                   // input rows read by one band
  const int64_t cstride = rows * pr.len;                     // channel stride of the x scratch
  T* shift_out = stats;                                      // (B, G, Ho, Wo)
  T* inv_out = stats + geo.B * G * Ho * Wo;                  // (B, G, Ho, Wo)
  const GroupChunks chunks(geo, xs.w != 1, cstride * sizeof(T), sizeof(T));
  const std::vector<T> shifted = shifted_priors(prior, G, kk);
  at::parallel_for(0, geo.B * G * bands, geo.grain(band), [&](int64_t begin, int64_t end) {
    const int64_t slots = chunks.slots();
    // Not a line-aligned Scratch: with one, channels_last forwards measured 1.06-1.20x as long
    // (res2 to res5.0, 2 threads). Not settled whether from the alignment: two builds of the same
    // forward, differing in the backward, timed its channels_last cases up to 1.2x apart too.
    std::vector<T> scratch(kk * V + Wv + k * Wv + (slots + 1) * cstride, T(0));
    T* e = scratch.data();       // (k*k, V): one block's weights, for channels beyond the first
    T* q = e + kk * V;           // (Wv,) query row, zero-padded
    T* colmask = q + Wv;         // (k, Wv)
    T* kp = colmask + k * Wv;    // (rows, pr.len): padded key rows; padding stays 0
    // x: (slots, rows, pr.len) after the key rows, the chunk's channels
    ChunkCopy<T> xcopy{geo, pr, chunks, x, xs, kp + cstride, cstride, rows, bands};
    fill_column_mask(geo, Wv, colmask);
    for (int64_t task = begin; task < end; ++task) {
      const auto [b, g, t] = order.split(task);
      const int64_t bg = b * G + g;
      const int64_t i0 = t * band, i1 = std::min(Ho, i0 + band), top = i0 * s - r;
      const int64_t c0 = g * m, mc = geo.channel_end(g) - c0;
      const T* pg = shifted.data() + g * kk;  // the prior less its bound
      for (int64_t rr = 0; rr < rows; ++rr) {
        const int64_t in_row = top + rr;
        if (in_row < 0 || in_row >= H) continue;  // never read: its kernel row is skipped
        copy_key_row(pr, kp + rr * pr.len, key, ks, b, g, in_row, W);
      }
      bool fresh;
      const T* xp = xcopy.group(b, t, g, top, &fresh);  // (m, rows, pr.len): this group's channels
      const int64_t nreg = std::min(mc, kRegChannels);
      const int64_t next = task + 1 < end ? task + 1 : -1;  // its band, prefetched row by row
      const auto [nb, ng, nt] = next >= 0 ? order.split(next) : order.split(task);
      const bool next_x = next >= 0 && xcopy.key(nb, nt, ng) != xcopy.key(b, t, g);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t ky0 = geo.ky0(i), ky1 = geo.ky1(i), rr0 = (i - i0) * s;
        if (next >= 0) {
          const int64_t part = i - i0, parts = i1 - i0;
          prefetch_band(geo, x, xs, key, ks, ng, nb, chunks.c0(ng), next_x ? chunks.channels(ng) : 0,
                        nt * band * s - r, part * rows / parts, (part + 1) * rows / parts);
        }
        read_query_row(q, query, qs, b, g, i, Wo);
        T* yrows[kRegChannels];  // output rows of the register channels (repeats are not stored)
        for (int64_t c = 0; c < kRegChannels; ++c) yrows[c] = y + ys_.row(b, c0 + std::min(c, nreg - 1), i);
        for (int64_t jb = 0; jb < Wv; jb += V) {
          const int64_t nv = std::min<int64_t>(V, Wo - jb);
          const Vec<T, V> qv = load<T, V>(q + jb);
          const T* kpj = kp + rr0 * pr.len + jb;
          const T* xcj = xp + rr0 * pr.len + jb;
          T* ej = mc > kRegChannels ? e : nullptr;
          Vec<T, V> acc[kRegChannels];
          auto pass = [&](auto unshifted, Vec<T, V> shift) {
            constexpr bool U = decltype(unshifted)::value;
            for (auto& a : acc) a = Vec<T, V>{};
            if (nreg > kChannelBlock) {
              return weights_pass<T, PHI, V, kRegChannels, true, U>(geo, ky0, ky1, qv, shift, kpj,
                  pg, colmask + jb, pr, Wv, xcj, cstride, nullptr, acc, ej, nullptr, V);
            }
            return weights_pass<T, PHI, V, kChannelBlock, true, U>(geo, ky0, ky1, qv, shift, kpj,
                pg, colmask + jb, pr, Wv, xcj, cstride, nullptr, acc, ej, nullptr, V);
          };
          const auto [shift, sum] = shifted_weights<T, PHI, V>(geo, ky0, ky1, qv, kpj, pg,
                                                               colmask + jb, pr, Wv, nv, pass);
          const Vec<T, V> inv = T(1) / sum;
          if (ys_.w == 1) {
            for (int64_t c = 0; c < kRegChannels; ++c) {  // a constant bound: acc stays in registers
              if (c < nreg) store_columns<T, V>(yrows[c] + jb, 1, acc[c] * inv, nv);
            }
          } else {  // channels_last: pixel by pixel, the group's channels of a pixel together
            Vec<T, V> out[kRegChannels];
            for (int64_t c = 0; c < kRegChannels; ++c) out[c] = acc[c] * inv;
            T* y0 = yrows[0] + jb * ys_.w;
            for (int64_t jj = 0; jj < nv; ++jj) {
              for (int64_t c = 0; c < nreg; ++c) y0[jj * ys_.w + c * ys_.c] = out[c][jj];
            }
          }
          for (int64_t cl = kRegChannels; cl < mc; cl += kChannelBlock) {  // from the stored weights
            const T* xcs[kChannelBlock];  // kernel row 0 of each channel; extra ones repeat cl
            T* ys[kChannelBlock];
            for (int64_t cc = 0; cc < kChannelBlock; ++cc) {
              const int64_t c = cl + cc < mc ? cl + cc : cl;
              xcs[cc] = xcj + c * cstride;
              ys[cc] = cl + cc < mc ? y + ys_.row(b, c0 + c, i) + jb * ys_.w : nullptr;
            }
            aggregate_block<T, V>(geo, e, V, inv, xcs, ys, ys_.w, pr, ky0, ky1, nv);
          }
          const int64_t at = (bg * Ho + i) * Wo + jb;
          store_columns<T, V>(shift_out + at, 1, shift, nv);
          store_columns<T, V>(inv_out + at, 1, inv, nv);
        }
      }
    }
  });
}

template <int PHI, typename VT>
struct PhiGrad;
// dphi/dq = 2 (k - q), dphi/dk = -2 (k - q): one term u = k - q, scaled at the end.
template <typename VT>
struct PhiGrad<kSqdiff, VT> {
  static constexpr double kQ = 2.0, kK = -2.0;
  static VT dq(VT q, VT k) { return k - q; }
  static VT dk(VT, VT, VT dq) { return dq; }
};
// dphi/dq = sign(k - q), dphi/dk = -sign(k - q), sign(0) = 0 as in torch.
template <typename VT>
struct PhiGrad<kAbsdiff, VT> {
  static constexpr double kQ = 1.0, kK = -1.0;
  static VT dq(VT q, VT k) {
    const VT zero = {}, one = zero + 1;
    return k > q ? one : (k < q ? -one : zero);
  }
  static VT dk(VT, VT, VT dq) { return dq; }
};
// dphi/dq = k, dphi/dk = q.
template <typename VT>
struct PhiGrad<kMult, VT> {
  static constexpr double kQ = 1.0, kK = 1.0;
  static VT dq(VT, VT k) { return k; }
  static VT dk(VT q, VT, VT) { return q; }
};

// Stride 1: dst[j + kx] += src[kx][j] for the k neighbours kx of one kernel row and all output
// columns j (the transpose of the forward's read), as a gather over the padded input columns t in
// [tb0, tb1) (t - kx = j), so that no two writes collide. src: (k, ld) rows pointing at column 0
// after a left margin of k - 1 zeros, 0 from column Wv on; dst: padded input row.
template <typename T, int V>
void scatter_row(const Geometry& geo, const T* __restrict__ src, int64_t ld, int64_t tb0,
                 int64_t tb1, T* __restrict__ dst) {
  for (int64_t tb = tb0; tb < tb1; tb += V) {
    Vec<T, V> acc = load<T, V>(dst + tb);
    for (int64_t kx = 0; kx < geo.k; ++kx) acc += load<T, V>(src + kx * ld + tb - kx);
    store<T, V>(dst + tb, acc);
  }
}

// Stride 1, grad_x of up to kChannelBlock channels, one kernel row: dsts[c][j + kx] += src[kx][j]
// * gys[c][j], in gather form over the padded input columns t in [tb0, tb1): the channels share
// each load of the weights and their independent accumulators hide the multiply-adds' latency.
// Channels c >= nc repeat channel 0's pointers and are not stored.
template <typename T, int V>
void scatter_row_channels(const Geometry& geo, const T* __restrict__ src, const T* const* gys,
                          T* const* dsts, int64_t nc, int64_t ld, int64_t tb0, int64_t tb1) {
  for (int64_t tb = tb0; tb < tb1; tb += V) {
    Vec<T, V> acc[kChannelBlock];
    for (int64_t c = 0; c < kChannelBlock; ++c) acc[c] = load<T, V>(dsts[c] + tb);
    for (int64_t kx = 0; kx < geo.k; ++kx) {
      const Vec<T, V> w = load<T, V>(src + kx * ld + tb - kx);
      for (int64_t c = 0; c < kChannelBlock; ++c) acc[c] += w * load<T, V>(gys[c] + tb - kx);
    }
    for (int64_t c = 0; c < kChannelBlock; ++c) {  // a constant bound: acc stays in registers
      if (c < nc) store<T, V>(dsts[c] + tb, acc[c]);
    }
  }
}

// Stride s > 1, one kernel row: dsts[c][j*s + kx] += src[kx][j] (* gys[c][j] when MUL) with the
// destination rows in phases (padded column t at (t % s) * Wq + t / s). Neighbour kx of output
// column j lands at phase kx % s, element j + kx / s: consecutive columns on consecutive
// elements. Each phase p runs as a gather over its elements u (kx = p + a*s, j = u - a), so that
// no two writes collide. src, gys: as scatter_row_channels (left margin >= (k - 1) / s, 0 from
// Wv on); without MUL only channel 0 is used. Elements [0, Wu) of each phase (whole blocks, Wu <=
// Wq) are written, the rest left as they were.
template <typename T, int V, bool MUL>
void scatter_phases(const Geometry& geo, const T* __restrict__ src, const T* const* gys,
                    T* const* dsts, int64_t nc, int64_t ld, int64_t Wq, int64_t Wu) {
  const int64_t k = geo.k, s = geo.s;
  for (int64_t p = 0; p < std::min(s, k); ++p) {
    const int64_t na = (k - 1 - p) / s + 1;  // kx = p, p + s, ... < k
    for (int64_t ub = 0; ub < Wu; ub += V) {
      Vec<T, V> acc[kChannelBlock];
      for (int64_t c = 0; c < kChannelBlock; ++c) acc[c] = load<T, V>(dsts[c] + p * Wq + ub);
      for (int64_t a = 0; a < na; ++a) {
        const Vec<T, V> w = load<T, V>(src + (p + a * s) * ld + ub - a);
        if constexpr (MUL) {
          for (int64_t c = 0; c < kChannelBlock; ++c) acc[c] += w * load<T, V>(gys[c] + ub - a);
        } else {
          acc[0] += w;
        }
      }
      for (int64_t c = 0; c < kChannelBlock; ++c) {  // a constant bound: acc stays in registers
        if (c < nc) store<T, V>(dsts[c] + p * Wq + ub, acc[c]);
      }
    }
  }
}

// Channels whose grad_x the all-rows gather accumulates at once (K * NC accumulators) with
// AVX-512 and on targets whose registers are not modelled (gather_channels).
constexpr int kGatherChannels = 4;

// The all-rows gather's channels at once for K kernel rows: kGatherChannels with AVX-512 (its 7
// x 4 accumulators, 4 grad_y' vectors and a weight at K = 7 need 33 of the 32 registers:
// in_register) and where the registers are not modelled; with AVX2's 16 as many as keep the K x
// NC accumulators, NC grad_y' vectors and a weight within them (floats: K = 7: 1, 5: 2, 3: 3;
// backwards 1.01-1.08x as fast as with 4, at res2 to res5 on that EPYC).
template <typename T, int V, int K>
constexpr int gather_channels() {
  if constexpr (kRegisterBytes != 32) {
    return kGatherChannels;
  } else {
    constexpr int per_vector = std::max<int>(1, V * sizeof(T) / kRegisterBytes);
    return std::max(1, (kVectorRegisters / per_vector - 1) / (K + 1));
  }
}

// Makes the compiler hold v in a vector register where it would otherwise load it again as a
// memory operand of each instruction that uses it (x86 with AVX-512, one register's worth; a
// no-op elsewhere). The compiler does that when a loop's live vectors outnumber the registers:
// gather_rows's 7 x 4 accumulators, 4 grad_y' vectors and a weight need 33 of AVX-512's 32, and
// it reloaded each weight for all four of its multiply-adds, mostly across a cache line.
template <typename VT>
inline void in_register(VT& v) {
#if defined(__AVX512F__) && (defined(__GNUC__) || defined(__clang__))
  if constexpr (sizeof(VT) <= 64) asm("" : "+v"(v));
#endif
}

// grad_x of up to NC channels from one output row, all K kernel rows at once, at stride SS, for
// the block of V elements at ub of each phase of the band's gradient rows (padded input column
// t at (t % SS) * Wq + t / SS; at SS = 1 one phase, the plain padded row): neighbour kx = p + a*SS
// of output column j lands at phase p, element j + a, so dsts[c][ky * GW + p * Wq + ub + u] +=
// sum_a e[ky * K + kx][ub + u - a] * gys[c][ub + u - a] for ky < K, u < V. Each load of grad_y'
// (one channel, one a) feeds the K kernel rows' accumulators, which stay in registers over the
// phase's neighbours. e's rows of kernel rows outside the image must be 0, and e and gys need a
// left margin of (K - 1) / SS zeros. Channels c >= nc repeat channel 0 and are not stored.
template <typename T, int V, int K, int NC, int SS>
inline void gather_rows(const T* __restrict__ e, int64_t ld, const T* const* gys, T* const* dsts,
                        int64_t nc, int64_t GW, int64_t Wq, int64_t ub) {
  for (int p = 0; p < std::min(SS, K); ++p) {
    const int na = (K - 1 - p) / SS + 1;  // kx = p, p + SS, ... < K
    Vec<T, V> acc[K][NC];
    for (int ky = 0; ky < K; ++ky) {
      for (int c = 0; c < NC; ++c) acc[ky][c] = load<T, V>(dsts[c] + ky * GW + p * Wq + ub);
    }
    for (int a = 0; a < na; ++a) {
      const int kx = p + a * SS;
      Vec<T, V> g[NC];
      for (int c = 0; c < NC; ++c) g[c] = load<T, V>(gys[c] + ub - a);
      for (int ky = 0; ky < K; ++ky) {
        Vec<T, V> w = load<T, V>(e + (ky * K + kx) * ld + ub - a);
        in_register(w);  // one load for the NC multiply-adds
        for (int c = 0; c < NC; ++c) acc[ky][c] += w * g[c];
      }
    }
    for (int ky = 0; ky < K; ++ky) {
      for (int c = 0; c < NC; ++c) {  // a constant bound: acc stays in registers
        if (c < nc) store<T, V>(dsts[c] + ky * GW + p * Wq + ub, acc[ky][c]);
      }
    }
  }
}

// grad_x of the mc channels of one output row with gather_rows, over the elements [ub0, ub1) of
// each phase: block by block (the weights they read stay in L1 across the channels), NC channels
// at a time. gxrow0: kernel row 0 of channel 0 in the band's grad_x buffer; channel c at
// c * cstride.
template <typename T, int V, int K, int SS>
void gather_rows_channels(const T* e, int64_t ld, const T* gyp, T* gxrow0, int64_t mc,
                          int64_t cstride, int64_t GW, int64_t Wq, int64_t ub0, int64_t ub1) {
  constexpr int NC = gather_channels<T, V, K>();
  for (int64_t ub = ub0; ub < ub1; ub += V) {
    for (int64_t cl = 0; cl < mc; cl += NC) {
      const int64_t nc = std::min<int64_t>(NC, mc - cl);
      const T* gys[NC];
      T* dsts[NC];
      for (int c = 0; c < NC; ++c) {
        const int64_t ch = cl + (c < nc ? c : 0);
        gys[c] = gyp + ch * ld;
        dsts[c] = gxrow0 + ch * cstride;
      }
      gather_rows<T, V, K, NC, SS>(e, ld, gys, dsts, nc, GW, Wq, ub);
    }
  }
}

// grad_x of one output row with every kernel row at once (gather_rows) where k is 3, 5 or 7 and
// the stride 1 or 2; returns false elsewhere (the caller then goes kernel row by kernel row).
// At stride 1 the image's padded columns [tb0, tb1), at stride 2 the elements [0, Wu) of both
// phases (Wq apart).
template <typename T, int V>
bool gather_all_rows(int64_t k, int64_t s, const T* e, int64_t ld, const T* gyp, T* gxrow0,
                     int64_t mc, int64_t cstride, int64_t GW, int64_t Wq, int64_t Wu,
                     int64_t tb0, int64_t tb1) {
  auto with_k = [&](auto K, auto SS) {
    constexpr int KV = decltype(K)::value, SV = decltype(SS)::value;
    const int64_t ub0 = SV == 1 ? tb0 : 0, ub1 = SV == 1 ? tb1 : Wu;
    gather_rows_channels<T, V, KV, SV>(e, ld, gyp, gxrow0, mc, cstride, GW, Wq, ub0, ub1);
    return true;
  };
  auto with_s = [&](auto SS) {
    switch (k) {
      case 3: return with_k(std::integral_constant<int, 3>{}, SS);
      case 5: return with_k(std::integral_constant<int, 5>{}, SS);
      case 7: return with_k(std::integral_constant<int, 7>{}, SS);
      default: return false;
    }
  };
  if (s == 1) return with_s(std::integral_constant<int, 1>{});
  if (s == 2) return with_s(std::integral_constant<int, 2>{});
  return false;
}

// dst[col] = scale * (padded column col + r of src) for the W columns of one row (ADD: +=),
// src in phases of Wq elements (padded column t at (t % s) * Wq + t / s; s = 1: the plain padded
// row). Stride 2 interleaves the two phases pair of columns by pair, which the compiler vectorizes.
template <typename T, bool ADD>
void unpad_row(T* __restrict__ dst, const T* __restrict__ src, int64_t W, int64_t r, int64_t s,
               int64_t Wq, T scale) {
  auto put = [&](int64_t col, T value) {
    if constexpr (ADD) {
      dst[col] += scale * value;
    } else {
      dst[col] = scale * value;
    }
  };
  if (s == 1) {
    for (int64_t col = 0; col < W; ++col) put(col, src[r + col]);
  } else if (s == 2) {
    const T* __restrict__ even = src;  // padded columns 2u
    const T* __restrict__ odd = src + Wq;  // padded columns 2u + 1
    int64_t col = 0;
    if (r % 2 == 1 && W > 0) put(col++, odd[r / 2]);  // from here on col + r is even
    const int64_t pairs = (W - col) / 2, u0 = (col + r) / 2;
    for (int64_t u = 0; u < pairs; ++u) {
      put(col + 2 * u, even[u0 + u]);
      put(col + 2 * u + 1, odd[u0 + u]);
    }
    if (col + 2 * pairs < W) put(W - 1, even[u0 + pairs]);
  } else {
    for (int64_t col = 0; col < W; ++col) {
      const int64_t t = col + r;
      put(col, src[(t % s) * Wq + t / s]);
    }
  }
}

// The first columns of one input row of the band's grad_x to a channels_last grad_x (channel
// stride c), for a grad_x above stream_min_bytes: dst[col * w + cl] = (ADD: +=) src[cl * sc +
// at(col)], src in the band's layout (padded column t = col + r at (t % s) * Wq + t / s). float
// with AVX-512, stride 1 or 2, c = 1 and the channels in whole 16s: blocks of 16 columns x 16
// channels go through registers, one vector load per channel (at stride 2 two half loads, one
// from each phase, interleaved) and a 16 x 16 transpose, then one 64-byte store per pixel,
// non-temporal where it starts a cache line and the row is stored, not added: its lines would
// leave the cache before anyone reads them, so the store skips reading them first. Returns the
// first column not stored (0 where none is: the caller stores the rest element by element, the
// pixel kPixelsAhead columns ahead prefetched; ahead_end: the last column that may be asked for).
template <typename T, bool ADD>
int64_t stream_pixels(T* __restrict__ dst, int64_t w, int64_t c, const T* __restrict__ src,
                      int64_t sc, int64_t nch, int64_t W, int64_t r, int64_t s, int64_t Wq,
                      int64_t ahead_end) {
  int64_t col = 0;
#ifdef LRBENCH_MASKED_STORES
  if constexpr (std::is_same_v<T, float>) {
    if (c != 1 || !(s == 1 || s == 2) || nch % 16 != 0) return 0;
    const __m512i pairs = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (; col + 16 <= W; col += 16) {
      for (int64_t j = 0; j < 16 && col + j + kPixelsAhead < ahead_end; ++j) {
        const float* px = dst + (col + j) * w;
        for (int64_t o = 0; o < nch; o += kLineElems<float>) prefetch_ahead<true>(px, kPixelsAhead * w + o);
        prefetch_ahead<true>(px, kPixelsAhead * w + nch - 1);  // the last line, if px is unaligned
      }
      const int64_t t0 = col + r;
      for (int64_t cb = 0; cb < nch; cb += 16) {
        __m512 v[16];
        for (int ch = 0; ch < 16; ++ch) {
          const float* row = src + (cb + ch) * sc;
          if (s == 1) {
            v[ch] = _mm512_loadu_ps(row + t0);
          } else {  // columns col + 2i from phase t0 % 2, col + 2i + 1 from the other
            const __m256 first = _mm256_loadu_ps(row + (t0 % 2) * Wq + t0 / 2);
            const __m256 second = _mm256_loadu_ps(row + (1 - t0 % 2) * Wq + (t0 + 1) / 2);
            v[ch] = _mm512_permutex2var_ps(_mm512_castps256_ps512(first), pairs,
                                           _mm512_castps256_ps512(second));
          }
        }
        transpose16(v);  // v[j]: column col + j, channels cb..cb+15
        for (int64_t j = 0; j < 16; ++j) {
          float* d = dst + (col + j) * w + cb;
          if constexpr (ADD) {
            _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), v[j]));
          } else if (reinterpret_cast<uintptr_t>(d) % 64 == 0) {
            _mm512_stream_ps(d, v[j]);
          } else {
            _mm512_storeu_ps(d, v[j]);
          }
        }
      }
    }
    if constexpr (!ADD) _mm_sfence();  // the streaming stores reach memory before the task ends
  }
#endif
  return col;
}

// The size above which a channels_last grad_x is stored streaming (stream_pixels): 32 MiB, about
// a server CPU's last-level cache share (sysconf's figure is not to be trusted: a VM of this
// project's reported 384 MB), or what set_stream_min_bytes last set (tests: 0, so that small
// shapes take that path too).
std::atomic<int64_t>& stream_min_bytes() {
  static std::atomic<int64_t> bytes{int64_t{32} << 20};
  return bytes;
}

// Backward: task (b, g, band of output rows). With the forward's shift and 1 / sum of each output
// pixel, row by row, per block of V output columns (gy' = gy / sum, e = exp(logit - shift), so
// w = e / sum):
//   pass 1: e[n], dw'[n] = sum_c gy'[c] x_c[p(n)] (= dw / sum) and D = sum_n e dw' (= sum_n w dw);
//   pass 2: dlogit = e (dw' - D / sum), grad_q = sum_n dlogit dphi/dq, grad_prior[n] += dlogit,
//           and dlogit dphi/dk into d;
// then, row by row, grad_x_c[p(n, j)] += e[n][j] gy'[c][j] and grad_key[p(n, j)] += d[n][j].
// Scatters go to zero-padded band buffers, added to grad_x / grad_key at the end of the task
// (grad_x: of the chunk's last task on the thread);
// bands of one parity touch disjoint input rows, so each parity runs in parallel without races.
template <typename T, int PHI, int S, int V>
void backward_kernel(const Geometry& geo, const T* gy, const Strides& gys, const T* x,
                     const Strides& xs, const T* query, const Strides& qs, const T* key,
                     const Strides& ks, const T* prior, const T* stats, T* gx,
                     const Strides& gxs, T* gq, T* gkey,
                     double* gprior_parts, int64_t band) {
  using PG = PhiGrad<PHI, Vec<T, V>>;
  const int64_t H = geo.H, W = geo.W, G = geo.G, k = geo.k, r = geo.r;
  const int64_t Ho = geo.Ho, Wo = geo.Wo, kk = k * k, m = geo.m;
  const int64_t s = S > 0 ? S : geo.s;
  const int64_t Wv = (Wo + V - 1) / V * V;
  // grad_x above stream_min_bytes (about a last-level cache): its channels_last rows are stored
  // streaming (stream_pixels).
  const bool stream = geo.B * geo.C * H * W * static_cast<int64_t>(sizeof(T)) > stream_min_bytes().load();
  // Gathers at stride 1 visit the padded input columns t in [r, r + Wr): image columns 0..W-1
  // in whole blocks of V from the first one, reading e and d up to column r + Wr - 1.
  const int64_t Wr = (W + V - 1) / V * V, tb0 = r, tb1 = r + Wr;
  const int64_t Wx = (std::max({W + 2 * r, (Wv - 1) * s + k, r + Wr}) + V - 1) / V * V;
  // The band's gradient rows (grad_x, grad_key): at stride 1 padded rows of Wx columns; at a
  // stride s > 1 in s phases of Wq elements (padded column t at (t % s) * Wq + t / s, see
  // scatter_phases). GW: their row stride.
  const int64_t Wq = S == 1 ? Wx : (std::max(Wv + (k - 1) / s, (W - 1 + r) / s + 1) + V - 1) / V * V;
  const int64_t GW = S == 1 ? Wx : s * Wq;
  // Elements [0, Wu) of each phase hold every in-image column (t < r + W: element t / s), the only
  // ones stored to grad_x and grad_key: the stride-s gathers and scatters stop there (Wq also
  // holds where the padding columns' neighbours land: 2x the work at res4.0, 1.5x at res3.0).
  const int64_t Wu = std::min(Wq, ((r + W - 1) / s + 1 + V - 1) / V * V);
  // Left margin (at least k - 1 zeros) and row stride of e, d, gyp: whole cache lines, so that
  // column 0 of every row starts a line (Scratch), where pass 1 stores and pass 2 loads and stores
  // whole vectors (backward 1.02-1.17x, 2 threads, both formats).
  const int64_t LM = whole_lines<T>(k - 1), ld = LM + whole_lines<T>(std::max(Wx, Wq));
  const int64_t bands = (Ho + band - 1) / band, per_parity = (bands + 1) / 2;
  const TaskOrder order(geo, per_parity, xs.w != 1);  // a phase's tasks: (b, g, band / 2)
  const int64_t rows = (band - 1) * s + k;
  const PaddedRows pr(geo, Wx);
  const int64_t pl = pr.len, cstride = rows * pl;
  const T* shift_in = stats;
  const T* inv_in = stats + geo.B * G * Ho * Wo;
  // A chunk's tasks share its copy of x and its grad_x rows (stored once, after its last task):
  // each within kChunkBytes.
  const GroupChunks chunks(geo, xs.w != 1, std::max(cstride, rows * GW) * sizeof(T), sizeof(T));
  const std::vector<T> shifted = shifted_priors(prior, G, kk);
  for (int64_t parity = 0; parity < std::min<int64_t>(2, bands); ++parity) {  // 1 band: 1 phase
    at::parallel_for(0, geo.B * G * per_parity, geo.grain(band), [&](int64_t begin, int64_t end) {
      // x scratch: the chunk's channels; pass 1 reads kRegChannels slots of a group, those past
      // the chunk's channels 0 (copy_band_x).
      const int64_t slots = chunks.slots();
      Scratch<T> scratch(
          (2 * kk + m) * ld + (5 + k) * Wv + (slots + 1) * cstride + (slots + 1) * rows * GW + kk * V);
      T* e = scratch.data() + LM;  // (k*k, ld): weights; columns -LM..-1 and >= Wv stay 0
      T* d = e + kk * ld;          // (k*k, ld): dw', then dlogit * dphi/dk (unscaled)
      T* gyp = d + kk * ld;        // (m, ld): gy' rows, 0 beyond Wo
      T* inv = gyp - LM + m * ld;  // (Wv,): 1 / sum, 0 beyond Wo
      T* shift = inv + Wv;         // (Wv,)
      T* q = shift + Wv;           // (Wv,)
      T* gqv = q + Wv;             // (Wv,)
      T* dot = gqv + Wv;           // (Wv,): D / sum
      T* colmask = dot + Wv;       // (k, Wv)
      T* kp = colmask + k * Wv;    // (rows, pl) padded key rows of the band (layout pr)
      T* xall = kp + rows * pl;    // (slots, rows, pl) padded x rows of the chunk's channels
      T* gkp = xall + slots * cstride;  // (rows, GW) grad_key of the band
      ChunkCopy<T> xcopy{geo, pr, chunks, x, xs, xall, cstride, rows, bands};
      T* gxall = gkp + rows * GW;  // (slots, rows, GW) grad_x of the band, the chunk's channels
      T* gpv = gxall + slots * rows * GW;  // (k*k, V) grad_prior of the band, per lane
      int64_t run_g = 0;  // the first group of the chunk's tasks run here so far
      fill_column_mask(geo, Wv, colmask);
      for (int64_t task = begin; task < end; ++task) {
        const auto [b, g, tt] = order.split(task);
        const int64_t t = 2 * tt + parity, bg = b * G + g;
        if (t >= bands) continue;
        const int64_t c0 = g * m, mc = geo.channel_end(g) - c0;
        const int64_t i0 = t * band, i1 = std::min(Ho, i0 + band), top = i0 * s - r;
        const T* pg = shifted.data() + g * kk;  // the prior less its bound
        // Padding columns j >= Wo: shift 0, the prior's bound (their query is 0, so every phi's
        // logit is at most it and e stays finite) and 1 / sum = 0, so they contribute nothing.
        std::fill(shift + Wo, shift + Wv, T(0));
        for (int64_t rr = 0; rr < rows; ++rr) {
          const int64_t in_row = top + rr;
          if (in_row < 0 || in_row >= H) continue;
          copy_key_row(pr, kp + rr * pl, key, ks, b, g, in_row, W);
        }
        // x slots past the chunk's channels are 0 (read by pass 1 with grad_y' = 0).
        bool fresh;  // a new run of the chunk on this thread
        const T* xp = xcopy.group(b, t, g, top, &fresh);  // (m, rows, pl): this group's channels
        T* gxp = gxall + chunks.slot(g) * rows * GW;     // (m, rows, GW): its grad_x
        std::fill(gkp, gkp + rows * GW, T(0));  // accumulators to 0
        std::fill(gxp, gxp + m * rows * GW, T(0));
        if (fresh) run_g = g;
        std::fill(gpv, gpv + kk * V, T(0));
        const int64_t nreg = std::min(mc, kRegChannels);
        const int64_t next = task + 1 < end ? task + 1 : -1;  // its band, prefetched row by row
        const auto [nb, ng, ntt] = order.split(next >= 0 ? next : task);
        const int64_t nt = 2 * ntt + parity;
        const bool same_chunk_next = xcopy.key(nb, nt, ng) == xcopy.key(b, t, g);
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t ky0 = geo.ky0(i), ky1 = geo.ky1(i), rr0 = (i - i0) * s;
          const int64_t n0 = ky0 * k, n1 = ky1 * k;
          if (next >= 0 && nt < bands) {
            const int64_t part = i - i0, parts = i1 - i0;
            prefetch_band(geo, x, xs, key, ks, ng, nb, chunks.c0(ng),
                          same_chunk_next ? 0 : chunks.channels(ng), nt * band * s - r,
                          part * rows / parts, (part + 1) * rows / parts);
          }
          if (i + 1 < i1) {  // the next row's grad_y
            const T* next_row = gy + gys.row(b, c0, i + 1);
            if (gys.w == 1) {
              for (int64_t cl = 0; cl < mc; ++cl) prefetch_span(next_row + cl * gys.c, Wo);
            } else {
              for (int64_t j = 0; j < Wo; ++j) prefetch_span(next_row + j * gys.w, (mc - 1) * gys.c + 1);
            }
          }
          const int64_t at = (bg * Ho + i) * Wo;
          read_query_row(q, query, qs, b, g, i, Wo);
          std::memcpy(shift, shift_in + at, Wo * sizeof(T));
          std::memcpy(inv, inv_in + at, Wo * sizeof(T));
          const T* gyrow = gy + gys.row(b, c0, i);  // gy' = gy / sum
          if (gys.w == 1) {
            for (int64_t cl = 0; cl < mc; ++cl) {
              for (int64_t j = 0; j < Wo; ++j) gyp[cl * ld + j] = gyrow[cl * gys.c + j] * inv[j];
            }
          } else {  // channels_last: channel by channel (the row's pixels stay in L1)
            const int64_t sw = gys.w;
            for (int64_t cl = 0; cl < mc; ++cl) {
              const T* __restrict__ src = gyrow + cl * gys.c;
              T* __restrict__ dst = gyp + cl * ld;
              for (int64_t j = 0; j < Wo; ++j) dst[j] = src[j * sw] * inv[j];
            }
          }
          // pass 1: e, dw' of the register channels, D (here: sum_n e dw').
          for (int64_t jb = 0; jb < Wv; jb += V) {
            Vec<T, V> gyv[kRegChannels];
            for (int64_t c = 0; c < kRegChannels; ++c) {
              gyv[c] = c < nreg ? load<T, V>(gyp + c * ld + jb) : Vec<T, V>{};
            }
            const Vec<T, V> qv = load<T, V>(q + jb), sh = load<T, V>(shift + jb);
            const T* kpj = kp + rr0 * pl + jb;
            const T* xcj = xp + rr0 * pl + jb;
            Vec<T, V> acc[1] = {};
            if (nreg > kChannelBlock) {
              weights_pass<T, PHI, V, kRegChannels, false>(geo, ky0, ky1, qv, sh, kpj, pg,
                  colmask + jb, pr, Wv, xcj, cstride, gyv, acc, e + jb, d + jb, ld);
            } else {
              weights_pass<T, PHI, V, kChannelBlock, false>(geo, ky0, ky1, qv, sh, kpj, pg,
                  colmask + jb, pr, Wv, xcj, cstride, gyv, acc, e + jb, d + jb, ld);
            }
            store<T, V>(dot + jb, acc[0]);
          }
          if (mc > kRegChannels) {  // the other channels' dw', then D again from the whole dw'
            for (int64_t cl = kRegChannels; cl < mc; ++cl) {
              const T* xc = xp + cl * cstride + rr0 * pl;
              for (int64_t n = n0; n < n1; ++n) {
                const T* xn = xc + (n / k) * pl + pr.koff[n % k];
                for (int64_t jb = 0; jb < Wv; jb += V) {
                  store<T, V>(d + n * ld + jb, load<T, V>(d + n * ld + jb)
                                                   + load<T, V>(gyp + cl * ld + jb) * load<T, V>(xn + jb));
                }
              }
            }
            for (int64_t jb = 0; jb < Wv; jb += V) {
              Vec<T, V> acc = {};
              for (int64_t n = n0; n < n1; ++n) acc += load<T, V>(e + n * ld + jb) * load<T, V>(d + n * ld + jb);
              store<T, V>(dot + jb, acc);
            }
          }
          // pass 2: dlogit = e (dw' - D / sum); grad_q, grad_prior, and the grad_key terms in d.
          for (int64_t jb = 0; jb < Wv; jb += V) {
            const Vec<T, V> qv = load<T, V>(q + jb);
            const Vec<T, V> dsum = load<T, V>(dot + jb) * load<T, V>(inv + jb);
            Vec<T, V> gq_acc = {};
            for (int64_t ky = ky0; ky < ky1; ++ky) {
              const T* kr = kp + (rr0 + ky) * pl + jb;
              for (int64_t kx = 0; kx < k; ++kx) {
                const int64_t n = ky * k + kx;
                const Vec<T, V> dlogit = load<T, V>(e + n * ld + jb) * (load<T, V>(d + n * ld + jb) - dsum);
                const Vec<T, V> kv = load<T, V>(kr + pr.koff[kx]);
                const Vec<T, V> dq = PG::dq(qv, kv);
                gq_acc += dlogit * dq;
                store<T, V>(d + n * ld + jb, dlogit * PG::dk(qv, kv, dq));
                store<T, V>(gpv + n * V, load<T, V>(gpv + n * V) + dlogit);
              }
            }
            store<T, V>(gqv + jb, gq_acc * T(PG::kQ));
          }
          std::memcpy(gq + at, gqv, Wo * sizeof(T));
          // grad_x_c += w gy = e gy': at stride 1 or 2 with k = 3, 5 or 7 all kernel rows at
          // once (e's rows outside the image zeroed first), else kernel row by kernel row.
          const bool all_rows = (s == 1 || s == 2) && (k == 3 || k == 5 || k == 7);
          if (all_rows && (n0 > 0 || n1 < kk)) {
            for (int64_t n = 0; n < kk; ++n) {
              if (n < n0 || n >= n1) std::fill(e + n * ld, e + n * ld + Wv, T(0));
            }
          }
          T* gxrow0 = gxp + rr0 * GW;  // channel 0, kernel row 0
          const int64_t gxc = rows * GW;
          if (all_rows) {
            gather_all_rows<T, V>(k, s, e, ld, gyp, gxrow0, mc, gxc, GW, Wq, Wu, tb0, tb1);
          } else {
            for (int64_t cl = 0; cl < mc; cl += kChannelBlock) {
              const int64_t nc = std::min<int64_t>(kChannelBlock, mc - cl);
              for (int64_t ky = ky0; ky < ky1; ++ky) {
                const T* gys_[kChannelBlock];
                T* dsts[kChannelBlock];
                for (int64_t c = 0; c < kChannelBlock; ++c) {
                  const int64_t ch = cl + (c < nc ? c : 0);
                  gys_[c] = gyp + ch * ld;
                  dsts[c] = gxrow0 + ch * gxc + ky * GW;
                }
                if constexpr (S == 1) {
                  scatter_row_channels<T, V>(geo, e + ky * k * ld, gys_, dsts, nc, ld, tb0, tb1);
                } else {
                  scatter_phases<T, V, true>(geo, e + ky * k * ld, gys_, dsts, nc, ld, Wq, Wu);
                }
              }
            }
          }
          for (int64_t ky = ky0; ky < ky1; ++ky) {
            T* dst = gkp + (rr0 + ky) * GW;
            if constexpr (S == 1) {
              scatter_row<T, V>(geo, d + ky * k * ld, ld, tb0, tb1, dst);
            } else {
              T* dsts[kChannelBlock] = {dst, dst, dst, dst};
              scatter_phases<T, V, false>(geo, d + ky * k * ld, nullptr, dsts, 1, ld, Wq, Wu);
            }
          }
        }
        for (int64_t n = 0; n < kk; ++n) {  // this task's own slot, summed by the caller
          double lanes = 0.0;
          for (int64_t jj = 0; jj < V; ++jj) lanes += static_cast<double>(gpv[n * V + jj]);
          gprior_parts[(bg * bands + t) * kk + n] = lanes;
        }
        // The band's rows go to grad_x / grad_key: stored where this band is their first writer,
        // added where a band of the first phase (even) already wrote them: the rows an odd band
        // shares with its neighbours (bands of one phase never share rows). grad_x once the
        // chunk's last task here is done: the channels of its groups run so far, run_g to g.
        const bool store_x = next < 0 || !same_chunk_next;  // (a skipped next task: another t)
        const int64_t xc0 = run_g * m, xmc = c0 + mc - xc0;
        const T* gxrun = gxall + chunks.slot(run_g) * rows * GW;
        const T kscale = T(PG::kK);
        const int64_t shared_below = t > 0 ? top - band * s + rows : top;  // end of band t-1's rows
        const int64_t shared_above = t + 1 < bands ? top + band * s : top + rows;  // band t+1's start
        for (int64_t rr = 0; rr < rows; ++rr) {
          const int64_t in_row = top + rr;
          if (in_row < 0 || in_row >= H) continue;
          const bool add = parity == 1 && (in_row < shared_below || in_row >= shared_above);
          T* gkrow = gkey + (bg * H + in_row) * W;
          const T* gksrc = gkp + rr * GW;
          if (add) {
            unpad_row<T, true>(gkrow, gksrc, W, r, s, Wq, kscale);
          } else {
            unpad_row<T, false>(gkrow, gksrc, W, r, s, Wq, kscale);
          }
          if (!store_x) continue;
          T* gxrow = gx + gxs.row(b, xc0, in_row);
          const T* src = gxrun + rr * GW;  // channel cl at src + cl * rows * GW
          const int64_t sc = rows * GW;
          if (gxs.w == 1) {
            for (int64_t cl = 0; cl < xmc; ++cl) {
              T* dst = gxrow + cl * gxs.c;
              if (add) {
                unpad_row<T, true>(dst, src + cl * sc, W, r, s, Wq, T(1));
              } else {
                unpad_row<T, false>(dst, src + cl * sc, W, r, s, Wq, T(1));
              }
            }
          } else {  // channels_last: pixel by pixel, the pixel kPixelsAhead columns ahead (into
            // the next input row, if any) prefetched for writing
            const int64_t ahead_end = in_row + 1 < H ? W + kPixelsAhead : W;
            int64_t col = 0;  // the columns stored in blocks (stream_pixels), then the rest
            if (stream) {
              col = add ? stream_pixels<T, true>(gxrow, gxs.w, gxs.c, src, sc, xmc, W, r, s, Wq, ahead_end)
                        : stream_pixels<T, false>(gxrow, gxs.w, gxs.c, src, sc, xmc, W, r, s, Wq, ahead_end);
            }
            for (; col < W; ++col) {
              const int64_t t = col + r, at = S == 1 ? t : (t % s) * Wq + t / s;
              T* dst = gxrow + col * gxs.w;
              if (col + kPixelsAhead < ahead_end) {
                for (int64_t o = 0; o < (xmc - 1) * gxs.c + 1; o += 64 / sizeof(T)) {
                  prefetch_ahead<true>(dst, kPixelsAhead * gxs.w + o);
                }
                prefetch_ahead<true>(dst, kPixelsAhead * gxs.w + (xmc - 1) * gxs.c);
              }
              if (add) {
                for (int64_t cl = 0; cl < xmc; ++cl) dst[cl * gxs.c] += src[cl * sc + at];
              } else {
                for (int64_t cl = 0; cl < xmc; ++cl) dst[cl * gxs.c] = src[cl * sc + at];
              }
            }
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
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), "all inputs must share x's dtype");
  }
  // x is read through its strides (contiguous or channels_last), query and key through any
  // strides (only read, row by row); prior is contiguous.
  TORCH_CHECK(x.dim() == 4 && x.is_non_overlapping_and_dense(), "x must be a dense 4-d tensor");
  TORCH_CHECK(query.dim() == 4 && key.dim() == 4, "query and key must be 4-d tensors");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), G = key.size(1);
  TORCH_CHECK(H >= 1 && W >= 1, "x must have at least one row and one column");
  TORCH_CHECK(G >= 1 && G <= C, "key must have between 1 and C (x's channels) maps G");
  TORCH_CHECK(key.sizes() == at::IntArrayRef({B, G, H, W}), "key must be (B, G, H, W) with x's B, H, W");
  TORCH_CHECK(query.sizes() == at::IntArrayRef({B, G, (H - 1) / stride + 1, (W - 1) / stride + 1}),
              "query must be (B, G, Ho, Wo), the key's G and the output's size");
  TORCH_CHECK(prior.is_contiguous(), "fused_cpu kernels expect a contiguous prior");
  TORCH_CHECK(prior.sizes() == at::IntArrayRef({G, kernel_size, kernel_size}),
              "prior must be (G, k, k), the key's G and kernel_size");
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

// Gradient blocks kept between calls. glibc serves blocks above its mmap threshold (at most 32
// MiB) with fresh pages on every call and unmaps them on free: the stem's 103 MB grad_x (batch 8)
// then costs about 25,000 page faults per backward, 45% of it. A grad_x of at least kMinBytes is
// allocated here instead: a block of exactly its size that an earlier grad_x released, else a new
// one. The tensor owns its block like any other (autograd may add into it or keep it as x.grad;
// its storage resizes through this allocator); when the storage dies the block comes back, and
// at most kKeep free blocks of kMinBytes or more are kept, the most recently given back (older
// ones, and smaller blocks, are freed). Handed-out blocks are reported to PyTorch's profiler as
// allocations and frees (the same reporter as the CPU allocator's), so measured peaks count them;
// free blocks kept here are not counted, like a caching allocator's reserve.
class BlockPool final : public c10::Allocator {
 public:
  static constexpr size_t kMinBytes = size_t{32} << 20;
  static constexpr size_t kKeep = 2;

  static BlockPool& instance() {
    static BlockPool* pool = new BlockPool();  // never destroyed: deleters may run at exit
    return *pool;
  }

  c10::DataPtr allocate(size_t bytes) override {
    if (bytes == 0) return {nullptr, c10::Device(c10::DeviceType::CPU)};
    void* data = take(bytes);
    Block* block = nullptr;
    try {
      block = new Block{data, bytes};
    } catch (...) {
      c10::free_cpu(data);
      throw;
    }
    c10::profiledCPUMemoryReporter().New(data, bytes);
    return {data, block, &BlockPool::give_back, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  // Bytes in free blocks; release() frees them.
  size_t kept_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t total = 0;
    for (const Block& block : free_) total += block.bytes;
    return total;
  }

  void release() {
    std::vector<Block> gone;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      gone = free_;  // a copy: free_ keeps its capacity, so give() never allocates
      free_.clear();
    }
    for (const Block& block : gone) c10::free_cpu(block.data);
  }

 private:
  struct Block {
    void* data;
    size_t bytes;
  };

  BlockPool() { free_.reserve(kKeep + 1); }

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = free_.rbegin(); it != free_.rend(); ++it) {  // the most recent first
        if (it->bytes == bytes) {
          void* data = it->data;
          free_.erase(std::next(it).base());
          return data;
        }
      }
    }
    return c10::alloc_cpu(bytes);
  }

  static void give_back(void* context) {
    const Block block = *static_cast<Block*>(context);
    delete static_cast<Block*>(context);
    c10::profiledCPUMemoryReporter().Delete(block.data);
    instance().give(block);
  }

  void give(const Block& block) {
    if (block.bytes < kMinBytes) {
      c10::free_cpu(block.data);
      return;
    }
    void* evicted = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.push_back(block);
      if (free_.size() > kKeep) {
        evicted = free_.front().data;
        free_.erase(free_.begin());
      }
    }
    if (evicted != nullptr) c10::free_cpu(evicted);
  }

  std::mutex mutex_;
  std::vector<Block> free_;  // oldest first
};

// An uninitialised tensor like x (x's sizes, strides and dtype; x is dense): from BlockPool when
// large.
at::Tensor empty_grad_like(const at::Tensor& x) {
  if (static_cast<size_t>(x.numel() * x.element_size()) < BlockPool::kMinBytes) {
    return at::empty_like(x);
  }
  return at::Tensor(at::detail::empty_strided_generic(
      x.sizes(), x.strides(), &BlockPool::instance(), c10::DispatchKeySet(c10::DispatchKey::CPU),
      x.scalar_type()));
}

}  // namespace

// (y, stats) = local_relation(x, query, key, prior); same dtype (float32/float64); query and key
// of any strides, prior contiguous; x contiguous or channels_last, and y in x's memory format.
// stats: (2, B, G, Ho, Wo), each output pixel's softmax shift (less its group's prior bound:
// shifted_priors) and 1 / sum, for the backward.
std::vector<at::Tensor> fused_forward(const at::Tensor& x, const at::Tensor& query,
                                      const at::Tensor& key, const at::Tensor& prior,
                                      int64_t kernel_size, int64_t stride, int64_t phi) {
  check_inputs(x, query, key, prior, kernel_size, stride);
  const Geometry geo(x, key, kernel_size, stride);
  at::Tensor y = at::empty({geo.B, geo.C, geo.Ho, geo.Wo},
                           x.options().memory_format(x.suggest_memory_format()));
  at::Tensor stats = at::empty({2, geo.B, geo.G, geo.Ho, geo.Wo}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lrbench_fused_cpu_forward", [&] {
    dispatch_phi_stride(phi, stride, [&](auto P, auto S) {
      constexpr int PV = decltype(P)::value, SV = decltype(S)::value;
      const scalar_t* args[] = {x.const_data_ptr<scalar_t>(), query.const_data_ptr<scalar_t>(),
                                key.const_data_ptr<scalar_t>(), prior.const_data_ptr<scalar_t>()};
      scalar_t* outs[] = {y.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>()};
      // Register block of output columns: 8 for short rows (7x7 maps), else kWideBlock.
      if (geo.Wo <= 8) {
        forward_kernel<scalar_t, PV, SV, 8>(geo, args[0], Strides(x), args[1], Strides(query),
                                            args[2], Strides(key), args[3], outs[0], Strides(y),
                                            outs[1]);
      } else {
        forward_kernel<scalar_t, PV, SV, kWideBlock>(geo, args[0], Strides(x), args[1],
                                                     Strides(query), args[2], Strides(key), args[3],
                                                     outs[0], Strides(y), outs[1]);
      }
    });
  });
  return {y, stats};
}

// Gradients (x, query, key, prior) of sum(grad_y * y), with the forward's stats.
std::vector<at::Tensor> fused_backward(const at::Tensor& grad_y, const at::Tensor& x,
                                       const at::Tensor& query, const at::Tensor& key,
                                       const at::Tensor& prior, const at::Tensor& stats,
                                       int64_t kernel_size, int64_t stride, int64_t phi) {
  check_inputs(x, query, key, prior, kernel_size, stride);
  TORCH_CHECK(grad_y.is_non_overlapping_and_dense() && grad_y.scalar_type() == x.scalar_type(),
              "grad_y must be dense with x's dtype");
  const Geometry geo(x, key, kernel_size, stride);
  TORCH_CHECK(grad_y.sizes() == at::IntArrayRef({geo.B, geo.C, geo.Ho, geo.Wo}),
              "grad_y must have the output's shape");
  TORCH_CHECK(stats.is_contiguous() && stats.scalar_type() == x.scalar_type() &&
                  stats.sizes() == at::IntArrayRef({2, geo.B, geo.G, geo.Ho, geo.Wo}),
              "stats must be the forward's contiguous (2, B, G, Ho, Wo) statistics");
  // Bands of output rows; band * s >= k - s makes bands of one parity touch disjoint input rows.
  const int64_t min_band = std::max<int64_t>(1, (geo.k - 1) / geo.s);
  // No higher than the output (the band's scratch rows are zeroed and stored per task).
  const int64_t band = std::max(min_band, std::min({geo.Ho, choose_band(geo, min_band, true),
                                                    line_band(geo, x.stride(3) != 1)}));
  const int64_t bands = (geo.Ho + band - 1) / band;
  // Every input row lies in some band's rows (written there first, then added to) when s <= r + 1:
  // the bands' rows overlap (k >= s) and the last output row's kernel reaches the last input row
  // ((H - 1) % s <= r). No zero fill then (the stem's grad_x alone is 103 MB at batch 8); a
  // larger stride skips rows, which must be 0.
  const bool every_row = geo.s <= geo.r + 1;
  // x's memory format (x is dense: its strides are grad_x's). No huge-page hint (madvise): in
  // LR-Net-50's training step it made the stem's backward 80 to 202 ms from run to run (91 to 100
  // without it); a kept block (BlockPool) has no page faults at all.
  at::Tensor gx = empty_grad_like(x);
  if (!every_row) gx.zero_();
  // Contiguous whatever the strides of query and key (written row by row).
  at::Tensor gq = at::empty(query.sizes(), query.options());
  at::Tensor gkey = every_row ? at::empty(key.sizes(), key.options())
                              : at::zeros(key.sizes(), key.options());
  at::Tensor gprior_parts = at::zeros({geo.B, geo.G, bands, geo.k * geo.k},
                                      x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "lrbench_fused_cpu_backward", [&] {
    dispatch_phi_stride(phi, stride, [&](auto P, auto S) {
      constexpr int PV = decltype(P)::value, SV = decltype(S)::value;
      const scalar_t* args[] = {grad_y.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                query.const_data_ptr<scalar_t>(), key.const_data_ptr<scalar_t>(),
                                prior.const_data_ptr<scalar_t>(), stats.const_data_ptr<scalar_t>()};
      scalar_t* grads[] = {gx.data_ptr<scalar_t>(), gq.data_ptr<scalar_t>(),
                           gkey.data_ptr<scalar_t>()};
      if (geo.Wo <= 8) {
        backward_kernel<scalar_t, PV, SV, 8>(
            geo, args[0], Strides(grad_y), args[1], Strides(x), args[2], Strides(query), args[3],
            Strides(key), args[4], args[5], grads[0], Strides(gx), grads[1], grads[2],
            gprior_parts.data_ptr<double>(), band);
      } else {
        backward_kernel<scalar_t, PV, SV, kWideBlock>(
            geo, args[0], Strides(grad_y), args[1], Strides(x), args[2], Strides(query), args[3],
            Strides(key), args[4], args[5], grads[0], Strides(gx), grads[1], grads[2],
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
  module.def("kept_bytes", [] { return BlockPool::instance().kept_bytes(); },
             "bytes of free gradient blocks kept for the next backward");
  module.def("release_kept", [] { BlockPool::instance().release(); },
             "free the kept gradient blocks");
  module.def("stream_min_bytes", [] { return stream_min_bytes().load(); },
             "grad_x bytes above which channels_last rows are stored streaming");
  module.def("set_stream_min_bytes", [](int64_t bytes) { stream_min_bytes().store(bytes); },
             "set that size (0: always, where the CPU and shape allow)");
  module.attr("wide_block") = kWideBlock;
  module.attr("vector_registers") = kVectorRegisters;
  module.def("gather_channels", [](int64_t k) {
    TORCH_CHECK(k == 3 || k == 5 || k == 7, "k must be 3, 5 or 7, got ", k);
    if (k == 3) return gather_channels<float, kWideBlock, 3>();
    return k == 5 ? gather_channels<float, kWideBlock, 5>() : gather_channels<float, kWideBlock, 7>();
  }, "float32 channels at once of the all-rows grad_x gather for k kernel rows");
  module.attr("kept_min_bytes") = BlockPool::kMinBytes;
  module.attr("kept_blocks") = BlockPool::kKeep;
}
