// kernels/flash_attention.cu under the CPU emulation (run.sh) against float64 loops: forward
// output and lse, then dq/dk/dv, causal with and without a window, GQA, fewer queries than keys,
// bidirectional with key lengths (one sequence empty), head dims 7-128, tails of every tile;
// then the tensor-core forward (zett_flash_attn_forward_mma64/_mma128, fm_mma from shim.h) on
// bf16 Q/K/V read as column windows of one fused row, fp32 and bf16 outputs.
#include "flash_attention.emu.cpp"
#include <cstdio>
#include <random>
#include <vector>
using namespace std;
static vector<float> rnd(size_t n, int seed, float s = 1) { mt19937 g(seed); uniform_real_distribution<float> u(-s, s); vector<float> v(n); for (auto& x : v) x = u(g); return v; }
int fails = 0;
void check(const char* what, const vector<double>& e, const vector<float>& a, double atol, double rtol) {
  double worst = 0; size_t wi = 0; bool bad = false;
  for (size_t i = 0; i < e.size(); i++) { double err = fabs(a[i] - e[i]); double ex = err - (atol + rtol * fabs(e[i])); if (ex > worst || std::isnan(err)) { worst = std::isnan(err) ? 1e30 : ex; wi = i; bad = true; } }
  printf("%-40s %s", what, bad ? "FAIL" : "ok"); if (bad) printf(" at %zu: got %g want %g", wi, a[wi], e[wi]); printf("\n"); if (bad) fails++;
}
void run(int B, int Tq, int Tk, int H, int Hkv, int D, int causal, int window, bool lens) {
  int off = Tk - Tq; float scale = 1.0f / sqrtf(D);
  auto q = rnd((size_t)B * Tq * H * D, 1, 2), k = rnd((size_t)B * Tk * Hkv * D, 2, 2), v = rnd((size_t)B * Tk * Hkv * D, 3), dO = rnd((size_t)B * Tq * H * D, 4);
  vector<int> kl(B); for (int b = 0; b < B; b++) kl[b] = b == 1 ? 0 : Tk - 2 * b;
  auto Q = [&](int b, int i, int h, int d) { return (double)q[(((size_t)b * Tq + i) * H + h) * D + d]; };
  auto K = [&](int b, int j, int h, int d) { return (double)k[(((size_t)b * Tk + j) * Hkv + h) * D + d]; };
  auto V = [&](int b, int j, int h, int d) { return (double)v[(((size_t)b * Tk + j) * Hkv + h) * D + d]; };
  auto DO = [&](int b, int i, int h, int d) { return (double)dO[(((size_t)b * Tq + i) * H + h) * D + d]; };
  vector<double> O(q.size()), L((size_t)B * H * Tq), dq(q.size()), dk(k.size()), dv(v.size());
  int G = H / Hkv;
  for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int i = 0; i < Tq; i++) {
    int kh = h / G, pos = i + off, valid = lens ? min(kl[b], Tk) : Tk;
    vector<double> s(Tk, -INFINITY); double m = -INFINITY;
    for (int j = 0; j < Tk; j++) { bool vis = j < valid && (!causal || (j <= pos && (window <= 0 || pos - j < window))); if (!vis) continue; double d = 0; for (int e = 0; e < D; e++) d += Q(b, i, h, e) * K(b, j, kh, e); s[j] = d * scale; m = fmax(m, s[j]); }
    double l = 0; for (int j = 0; j < Tk; j++) if (s[j] != -INFINITY) l += exp(s[j] - m);
    size_t lo = ((size_t)b * H + h) * Tq + i; L[lo] = l > 0 ? m + log(l) : -INFINITY;
    vector<double> p(Tk, 0); for (int j = 0; j < Tk; j++) if (s[j] != -INFINITY) p[j] = exp(s[j] - m) / l;
    double delta = 0;
    for (int e = 0; e < D; e++) { double o = 0; for (int j = 0; j < Tk; j++) o += p[j] * V(b, j, kh, e); O[(((size_t)b * Tq + i) * H + h) * D + e] = o; delta += o * DO(b, i, h, e); }
    for (int j = 0; j < Tk; j++) { if (p[j] == 0) continue; double dp = 0; for (int e = 0; e < D; e++) dp += DO(b, i, h, e) * V(b, j, kh, e); double ds = p[j] * (dp - delta);
      for (int e = 0; e < D; e++) { dq[(((size_t)b * Tq + i) * H + h) * D + e] += ds * K(b, j, kh, e) * scale; dk[(((size_t)b * Tk + j) * Hkv + kh) * D + e] += ds * Q(b, i, h, e) * scale; dv[(((size_t)b * Tk + j) * Hkv + kh) * D + e] += p[j] * DO(b, i, h, e); } }
  }
  vector<float> o(q.size()), lse(L.size()), delta(L.size()), gq(q.size()), gk(k.size()), gv(v.size());
  FlashFwdArgs a{}; a.q = q.data(); a.k = k.data(); a.v = v.data(); a.out = o.data(); a.lse = lse.data(); a.kv_lens = lens ? kl.data() : nullptr;
  a.q_batch_stride = (long long)Tq * H * D; a.k_batch_stride = a.v_batch_stride = (long long)Tk * Hkv * D; a.o_batch_stride = a.q_batch_stride;
  a.q_row_stride = a.o_row_stride = H * D; a.k_row_stride = a.v_row_stride = Hkv * D; a.batch = B; a.q_len = Tq; a.kv_len = Tk; a.q_offset = off; a.heads = H; a.kv_heads = Hkv; a.head_dim = D; a.window = window; a.scale = scale; a.causal = causal;
  size_t fsm = ((64 + 64) * (D + 1) + 64 * 33) * 4;
  emu_launch(zett_flash_attn_forward, {(unsigned)((Tq + 63) / 64), (unsigned)(B * H)}, 256, fsm, a);
  char name[200]; snprintf(name, 200, "B%d Tq%d Tk%d H%d/%d D%d c%d w%d l%d", B, Tq, Tk, H, Hkv, D, causal, window, lens);
  printf("== %s\n", name);
  check("  out", O, o, 2e-5, 2e-5);
  vector<double> Lf(L); vector<float> lf(lse); for (size_t i = 0; i < L.size(); i++) if (std::isinf(L[i])) { if (!std::isinf(lf[i])) { printf("  lse inf mismatch %zu\n", i); fails++; } Lf[i] = 0; lf[i] = 0; }
  check("  lse", Lf, lf, 2e-5, 2e-5);
  FlashBwdArgs g{}; g.q = q.data(); g.k = k.data(); g.v = v.data(); g.out = o.data(); g.dout = dO.data(); g.lse = lse.data(); g.delta = delta.data(); g.dq = gq.data(); g.dk = gk.data(); g.dv = gv.data(); g.kv_lens = a.kv_lens;
  g.q_batch_stride = a.q_batch_stride; g.k_batch_stride = a.k_batch_stride; g.v_batch_stride = a.v_batch_stride; g.o_batch_stride = a.o_batch_stride;
  g.q_row_stride = a.q_row_stride; g.k_row_stride = a.k_row_stride; g.v_row_stride = a.v_row_stride; g.o_row_stride = a.o_row_stride;
  g.batch = B; g.q_len = Tq; g.kv_len = Tk; g.q_offset = off; g.heads = H; g.kv_heads = Hkv; g.head_dim = D; g.window = window; g.scale = scale; g.causal = causal;
  g.do_batch_stride = g.dq_batch_stride = a.q_batch_stride; g.dk_batch_stride = g.dv_batch_stride = a.k_batch_stride;
  g.do_row_stride = g.dq_row_stride = H * D; g.dk_row_stride = g.dv_row_stride = Hkv * D;
  long long stats = (long long)B * H * Tq;
  emu_launch(zett_flash_attn_bwd_preprocess, {(unsigned)((stats + 7) / 8), 1}, 256, 0, g);
  size_t dqsm = ((128 + 64) * (D + 1) + 64 * 33) * 4, dkvsm = ((128 + 64) * (D + 1) + 2 * 64 * 33 + 64) * 4;
  emu_launch(zett_flash_attn_bwd_dq, {(unsigned)((Tq + 63) / 64), (unsigned)(B * H)}, 256, dqsm, g);
  emu_launch(zett_flash_attn_bwd_dkdv, {(unsigned)((Tk + 63) / 64), (unsigned)(B * Hkv)}, 256, dkvsm, g);
  check("  dq", dq, gq, 5e-5, 5e-5); check("  dk", dk, gk, 5e-5, 5e-5); check("  dv", dv, gv, 5e-5, 5e-5);
}
static uint16_t to_bf16(float f) { return zett_f32_to_bf16(f); }
static double from_bf16(uint16_t v) { return __uint_as_float((uint32_t)v << 16); }
// The tensor-core forward against float64 over the same bf16 inputs. Bound: the probabilities
// are rounded to bf16 for P·V (≤ 2⁻⁹ relative each: |err| ≤ 2⁻⁹·max|v|, |v| ≤ 2 here), plus
// a bf16 output's rounding: 2e-2 + 8e-3·|ref|; lse within 1e-5.
void run_mma(int B, int Tq, int Tk, int H, int Hkv, int D, int causal, int window, bool lens,
             bool bf16_out) {
  int off = Tk - Tq, rows = max(Tq, Tk), ld = (H + 2 * Hkv) * D + 8; float scale = 1.0f / sqrtf(D);
  auto src = rnd((size_t)B * rows * ld, 11, 2);
  vector<uint16_t> buf(src.size()); for (size_t i = 0; i < src.size(); i++) buf[i] = to_bf16(src[i]);
  vector<int> kl(B); for (int b = 0; b < B; b++) kl[b] = b == 1 ? 0 : Tk - 2 * b;
  auto X = [&](int b, int row, int col) { return from_bf16(buf[((size_t)b * rows + row) * ld + col]); };
  vector<double> O((size_t)B * Tq * H * D), L((size_t)B * H * Tq);
  int G = H / Hkv;
  for (int b = 0; b < B; b++) for (int h = 0; h < H; h++) for (int i = 0; i < Tq; i++) {
    int kh = h / G, pos = i + off, valid = lens ? min(kl[b], Tk) : Tk;
    vector<double> s(Tk, -INFINITY); double m = -INFINITY;
    for (int j = 0; j < Tk; j++) { bool vis = j < valid && (!causal || (j <= pos && (window <= 0 || pos - j < window))); if (!vis) continue; double d = 0; for (int e = 0; e < D; e++) d += X(b, i, h * D + e) * X(b, j, (H + kh) * D + e); s[j] = d * scale; m = fmax(m, s[j]); }
    double l = 0; for (int j = 0; j < Tk; j++) if (s[j] != -INFINITY) l += exp(s[j] - m);
    L[((size_t)b * H + h) * Tq + i] = l > 0 ? m + log(l) : -INFINITY;
    for (int e = 0; e < D; e++) { double o = 0; for (int j = 0; j < Tk; j++) if (s[j] != -INFINITY) o += exp(s[j] - m) / l * X(b, j, (H + Hkv + kh) * D + e); O[(((size_t)b * Tq + i) * H + h) * D + e] = o; }
  }
  vector<float> of(O.size(), 777), lse(L.size(), 777); vector<uint16_t> ob(O.size(), 0);
  FlashFwdArgs a{}; a.q = buf.data(); a.k = buf.data() + H * D; a.v = buf.data() + (H + Hkv) * D;
  a.out = bf16_out ? (void*)ob.data() : (void*)of.data(); a.lse = lse.data(); a.kv_lens = lens ? kl.data() : nullptr;
  a.q_batch_stride = a.k_batch_stride = a.v_batch_stride = (long long)rows * ld; a.o_batch_stride = (long long)Tq * H * D;
  a.q_row_stride = a.k_row_stride = a.v_row_stride = ld; a.o_row_stride = H * D; a.batch = B; a.q_len = Tq; a.kv_len = Tk; a.q_offset = off;
  a.heads = H; a.kv_heads = Hkv; a.head_dim = D; a.window = window; a.scale = scale; a.causal = causal;
  a.in_dtype = ZETT_BF16; a.out_dtype = bf16_out ? ZETT_BF16 : ZETT_F32;
  size_t smem = 2 * 64 * (D + 8) * 2;
  emu_launch(D == 64 ? zett_flash_attn_forward_mma64 : zett_flash_attn_forward_mma128, {(unsigned)((Tq + 63) / 64), (unsigned)(B * H)}, 128, smem, a);
  vector<float> o(O.size()); for (size_t i = 0; i < o.size(); i++) o[i] = bf16_out ? (float)from_bf16(ob[i]) : of[i];
  char name[200]; snprintf(name, 200, "mma B%d Tq%d Tk%d H%d/%d D%d c%d w%d l%d bf16out%d", B, Tq, Tk, H, Hkv, D, causal, window, lens, bf16_out);
  printf("== %s\n", name);
  check("  out", O, o, 2e-2, 8e-3);
  vector<double> Lf(L); vector<float> lf(lse); for (size_t i = 0; i < L.size(); i++) if (std::isinf(L[i])) { if (!std::isinf(lf[i])) { printf("  lse inf mismatch %zu\n", i); fails++; } Lf[i] = 0; lf[i] = 0; }
  check("  lse", Lf, lf, 1e-5, 1e-5);
}
int main() {
  run(1, 77, 77, 2, 2, 64, 1, 0, false);
  run(2, 130, 130, 4, 2, 32, 1, 0, false);
  run(1, 100, 100, 2, 1, 80, 1, 37, false);
  run(1, 5, 70, 3, 3, 16, 1, 0, false);
  run(3, 9, 9, 2, 2, 24, 0, 0, true);
  run(1, 150, 150, 2, 2, 128, 1, 0, false);
  run(2, 70, 90, 4, 1, 7, 1, 0, true);
  run_mma(1, 70, 70, 2, 2, 64, 1, 0, false, false);     // causal, partial tiles
  run_mma(2, 130, 130, 4, 2, 128, 1, 0, false, true);   // GQA, bf16 out, three key tiles
  run_mma(1, 5, 150, 2, 1, 64, 1, 0, false, false);     // KV cache: five queries after 145
  run_mma(1, 1, 77, 2, 2, 128, 1, 0, false, false);     // decoding: one query
  run_mma(1, 140, 140, 2, 2, 64, 1, 40, false, false);  // sliding window
  run_mma(3, 9, 9, 2, 2, 64, 0, 0, true, false);        // bidirectional, key lengths, one empty
  run_mma(2, 100, 100, 2, 2, 64, 0, 0, false, true);    // bidirectional, bf16 out
  printf("fails: %d\n", fails); return fails != 0;
}
