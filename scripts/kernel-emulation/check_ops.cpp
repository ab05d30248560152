// The other op kernels under the CPU emulation (run.sh) against float64 loops: the chunked
// cross-entropy (3 chunks, bias, ignored target), LayerNorm/RMSNorm forward, dx and the two-stage
// parameter gradients, activations and SwiGLU with their derivatives (central differences),
// rotary (both styles, partial) and its inverse, embedding gather/scatter-add with a bad id,
// strided copies.
#include "cross_entropy.emu.cpp"
#include "norm.emu.cpp"
#include "activation.emu.cpp"
#include "rotary.emu.cpp"
#include "gather.emu.cpp"
#include "residual.emu.cpp"
#include <cstdio>
#include <random>
#include <vector>
using namespace std;
static vector<float> rnd(size_t n, int seed, float s = 1) { mt19937 g(seed); uniform_real_distribution<float> u(-s, s); vector<float> v(n); for (auto& x : v) x = u(g); return v; }
int fails = 0;
void check(const char* what, const vector<double>& e, const vector<float>& a, double atol = 2e-5, double rtol = 2e-5) {
  double worst = 0; size_t wi = 0; bool bad = false;
  if (e.size() != a.size()) { printf("%s size mismatch\n", what); fails++; return; }
  for (size_t i = 0; i < e.size(); i++) { double err = fabs(a[i] - e[i]); double ex = err - (atol + rtol * fabs(e[i])); if (ex > worst || std::isnan(err)) { worst = std::isnan(err) ? 1e30 : ex; wi = i; bad = true; } }
  printf("%-40s %s", what, bad ? "FAIL" : "ok"); if (bad) printf(" at %zu: got %g want %g", wi, a[wi], e[wi]); printf("\n"); if (bad) fails++;
}
unsigned grid(long long n) { return (unsigned)std::min<long long>(65536, std::max<long long>(1, (n + 255) / 256)); }
unsigned rowblock(int cols) { return (unsigned)std::clamp((cols / 4 + 31) / 32 * 32, 32, 512); }
void ce() {
  const int N = 9, V = 300, C = 128; auto z = rnd((size_t)N * V, 5, 4), bias = rnd(V, 6); vector<int> t = {5, 299, -100, 0, 128, 127, 256, 1, 200};
  auto dl = rnd(N, 7);
  vector<double> lse(N), loss(N), grad((size_t)N * V);
  for (int r = 0; r < N; r++) { double m = -1e300; for (int j = 0; j < V; j++) m = fmax(m, (double)z[r * V + j] + bias[j]); double s = 0; for (int j = 0; j < V; j++) s += exp(z[r * V + j] + (double)bias[j] - m); lse[r] = m + log(s); loss[r] = t[r] < 0 ? 0 : lse[r] - (z[r * V + t[r]] + (double)bias[t[r]]);
    for (int j = 0; j < V; j++) grad[r * V + j] = t[r] < 0 ? 0 : (exp(z[r * V + j] + (double)bias[j] - lse[r]) - (j == t[r])) * dl[r]; }
  vector<float> chunk((size_t)N * C), stats(3 * N), gl(N), gs(N), gg((size_t)N * V);
  CrossEntropyArgs a{}; a.logits = chunk.data(); a.targets = t.data(); a.row_max = stats.data(); a.row_sum = stats.data() + N; a.target_logit = stats.data() + 2 * N; a.loss = gl.data(); a.lse = gs.data(); a.bias = bias.data(); a.rows = N; a.ld = C; a.bias_dtype = 0; a.dloss = dl.data();
  for (int pass = 0; pass < 2; pass++) for (int c0 = 0; c0 < V; c0 += C) { int cols = std::min(C, V - c0); for (int r = 0; r < N; r++) for (int j = 0; j < cols; j++) chunk[r * C + j] = z[r * V + c0 + j];
    a.col0 = c0; a.cols = cols;
    if (pass == 0) emu_launch(zett_ce_chunk_stats, {N, 1}, 256, 0, a);
    else { vector<float> dz((size_t)N * C); a.dlogits = dz.data(); a.out_dtype = 0; emu_launch(zett_ce_chunk_grad, {N, 1}, 256, 0, a); for (int r = 0; r < N; r++) for (int j = 0; j < cols; j++) gg[r * V + c0 + j] = dz[r * C + j]; }
    if (pass == 0 && c0 + C >= V) emu_launch(zett_ce_finish, {1, 1}, 256, 0, a); }
  check("ce loss", loss, gl); check("ce lse", lse, gs); check("ce dlogits", grad, gg);
}
void norms(bool ln, bool unit) {
  const int N = 70, W = 131; auto x = rnd((size_t)N * W, 8, 3), w = rnd(W, 9), b = rnd(W, 10), dy = rnd((size_t)N * W, 11);
  vector<double> y((size_t)N * W), dx((size_t)N * W), dw(W), db(W), mu(N), rs(N);
  for (int r = 0; r < N; r++) { double m = 0; if (ln) { for (int c = 0; c < W; c++) m += x[r * W + c]; m /= W; } double q = 0; for (int c = 0; c < W; c++) q += (x[r * W + c] - m) * (x[r * W + c] - m); double rstd = 1 / sqrt(q / W + 1e-5); mu[r] = m; rs[r] = rstd;
    double sg = 0, sgx = 0; for (int c = 0; c < W; c++) { double wt = w[c] + (unit ? 1 : 0); double xh = (x[r * W + c] - m) * rstd; y[r * W + c] = xh * wt + (ln ? b[c] : 0); double g = dy[r * W + c] * wt; sg += g; sgx += g * xh; dw[c] += dy[r * W + c] * xh; db[c] += dy[r * W + c]; }
    for (int c = 0; c < W; c++) { double wt = w[c] + (unit ? 1 : 0); double xh = (x[r * W + c] - m) * rstd; double g = dy[r * W + c] * wt; dx[r * W + c] = rstd * (g - (ln ? sg / W : 0) - xh * sgx / W); } }
  vector<float> gy((size_t)N * W), gm(N), gr(N), gdx((size_t)N * W), part(2 * 2 * W), gdw(W), gdb(W);
  NormArgs a{}; a.x = x.data(); a.weight = w.data(); a.bias = ln ? b.data() : nullptr; a.out = gy.data(); a.mean = ln ? gm.data() : nullptr; a.rstd = gr.data(); a.rows = N; a.cols = W; a.eps = 1e-5f; a.unit_offset = unit;
  emu_launch(ln ? zett_layernorm_forward : zett_rmsnorm_forward, {N, 1}, rowblock(W), 0, a);
  char s[100]; snprintf(s, 100, "%s unit%d forward", ln ? "layernorm" : "rmsnorm", unit); check(s, y, gy);
  vector<double> rsd(rs.begin(), rs.end()); check("  rstd", rsd, gr);
  NormBwdArgs g{}; g.x = x.data(); g.weight = w.data(); g.dy = dy.data(); g.mean = ln ? gm.data() : nullptr; g.rstd = gr.data(); g.dx = gdx.data(); g.dw_partial = part.data(); g.db_partial = part.data() + 2 * W; g.rows = N; g.cols = W; g.rows_per_chunk = 64; g.unit_offset = unit;
  emu_launch(zett_norm_backward, {N, 1}, rowblock(W), 0, g); check("  dx", dx, gdx);
  emu_launch(zett_norm_backward_params, {1, 2}, 256, 0, g);
  SumRowsArgs sr{}; sr.x = part.data(); sr.out = gdw.data(); sr.rows = 2; sr.cols = W; sr.ld = W; sr.beta = 0; emu_launch(zett_sum_rows, {1, 1}, 256, 0, sr); check("  dw", dw, gdw);
  if (ln) { sr.x = part.data() + 2 * W; sr.out = gdb.data(); emu_launch(zett_sum_rows, {1, 1}, 256, 0, sr); check("  db", db, gdb); }
}
double act(double x, int a) { if (a == 1) return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); if (a == 2) return 0.5 * x * (1 + erf(x / sqrt(2))); if (a == 3) return x / (1 + exp(-x)); if (a == 4) return x > 0 ? x : 0; return x; }
void acts() {
  const int N = 9, W = 77; auto x = rnd(N * W, 12, 4), dy = rnd(N * W, 13), bias = rnd(W, 14);
  for (int f = 1; f <= 4; f++) { vector<double> y(N * W), dx(N * W); for (int i = 0; i < N * W; i++) { double v = x[i] + (double)bias[i % W]; y[i] = act(v, f); double h = 1e-6; dx[i] = dy[i] * (act(v + h, f) - act(v - h, f)) / (2 * h); }
    vector<float> gy(N * W), gdx(N * W); ActArgs a{}; a.x = x.data(); a.bias = bias.data(); a.out = gy.data(); a.count = N * W; a.cols = W; a.act = f; emu_launch(zett_act_forward, {grid(N * W), 1}, 256, 0, a);
    a.dy = dy.data(); a.out = gdx.data(); emu_launch(zett_act_backward, {grid(N * W), 1}, 256, 0, a);
    char s[64]; snprintf(s, 64, "act %d forward", f); check(s, y, gy); snprintf(s, 64, "act %d backward", f); check(s, dx, gdx, 1e-5, 1e-4); }
  const int I = 93; auto fused = rnd(N * 2 * I, 15, 3), dyg = rnd(N * I, 16);
  vector<double> y(N * I), dg(N * 2 * I); for (int r = 0; r < N; r++) for (int c = 0; c < I; c++) { double g = fused[r * 2 * I + c], u = fused[r * 2 * I + I + c]; y[r * I + c] = act(g, 3) * u; double h = 1e-6; dg[r * 2 * I + c] = dyg[r * I + c] * u * (act(g + h, 3) - act(g - h, 3)) / (2 * h); dg[r * 2 * I + I + c] = dyg[r * I + c] * act(g, 3); }
  vector<float> gy(N * I), gd(N * 2 * I); GluArgs a{}; a.gate = fused.data(); a.up = fused.data() + I; a.out = gy.data(); a.rows = N; a.cols = I; a.in_ld = 2 * I; a.out_ld = I; a.act = 3;
  emu_launch(zett_glu_forward, {grid(N * I), 1}, 256, 0, a); check("swiglu forward", y, gy);
  a.dy = dyg.data(); a.dgate = gd.data(); a.dup = gd.data() + I; emu_launch(zett_glu_backward, {grid(N * I), 1}, 256, 0, a); check("swiglu backward", dg, gd, 1e-5, 1e-4);
}
void rope(int style, int rd) {
  const int T = 13, H = 3, D = 64; auto x = rnd(T * H * D, 17); vector<int> pos(T); for (int t = 0; t < T; t++) pos[t] = 7 * t + 1;
  vector<float> inv(rd / 2); for (int i = 0; i < rd / 2; i++) inv[i] = 1.0f / powf(10000.0f, 2 * i / (float)rd);
  vector<double> y(T * H * D); for (int t = 0; t < T; t++) for (int h = 0; h < H; h++) { const float* xr = &x[(t * H + h) * D]; double* yr = &y[(t * H + h) * D]; for (int c = 0; c < D; c++) yr[c] = xr[c];
    for (int i = 0; i < rd / 2; i++) { int c0 = style == 0 ? i : 2 * i, c1 = style == 0 ? i + rd / 2 : 2 * i + 1; double th = (double)(float)(pos[t] * inv[i]); yr[c0] = xr[c0] * cos(th) - xr[c1] * sin(th); yr[c1] = xr[c1] * cos(th) + xr[c0] * sin(th); } }
  vector<float> gy(T * H * D), back(T * H * D); RotaryArgs a{}; a.x = x.data(); a.out = gy.data(); a.positions = pos.data(); a.inv_freq = inv.data(); a.tokens = T; a.heads = H; a.head_dim = D; a.rotary_dim = rd; a.x_row_stride = a.out_row_stride = H * D; a.style = style; a.sign = 1;
  emu_launch(zett_rotary, {grid((long long)T * H * (D - rd / 2)), 1}, 256, 0, a); char s[64]; snprintf(s, 64, "rotary style %d dims %d", style, rd); check(s, y, gy);
  a.x = gy.data(); a.out = back.data(); a.sign = -1; emu_launch(zett_rotary, {grid((long long)T * H * (D - rd / 2)), 1}, 256, 0, a);
  vector<double> xd(x.begin(), x.end()); check("  inverse", xd, back);
}
void emb() {
  const int V = 37, D = 45; vector<int> ids = {3, 0, 36, 3, 17, 40, 0}; auto tab = rnd(V * D, 18), dout = rnd(ids.size() * D, 19);
  vector<double> y(ids.size() * D), dt(V * D); for (size_t t = 0; t < ids.size(); t++) for (int c = 0; c < D; c++) { if (ids[t] >= V) { y[t * D + c] = 0; continue; } y[t * D + c] = tab[ids[t] * D + c] * 2.0f; dt[ids[t] * D + c] += 2.0 * dout[t * D + c]; }
  vector<float> gy(ids.size() * D), gdt(V * D); int err = 0; EmbeddingArgs a{}; a.ids = ids.data(); a.table = tab.data(); a.out = gy.data(); a.error = &err; a.tokens = ids.size(); a.cols = D; a.scale = 2; a.vocab = V;
  emu_launch(zett_embedding_forward, {(unsigned)ids.size(), 1}, 32, 0, a); check("embedding forward", y, gy); printf("embedding error flag %d (want 6)\n", err); if (err != 6) fails++;
  a.out = gdt.data(); a.dout = dout.data(); emu_launch(zett_embedding_backward, {1, 1}, 256, 0, a); check("embedding backward", dt, gdt);
}
void copy() {
  const int N = 7, W = 33; auto x = rnd(N * W, 20); vector<float> o(N * 10); CopyArgs a{}; a.src = x.data() + 5; a.dst = o.data(); a.count = N * 10; a.rank = 2; a.shape[0] = N; a.shape[1] = 10; a.src_strides[0] = W; a.src_strides[1] = 1; a.dst_strides[0] = 10; a.dst_strides[1] = 1;
  emu_launch(zett_copy_strided, {grid(70), 1}, 256, 0, a); vector<double> e(N * 10); for (int r = 0; r < N; r++) for (int c = 0; c < 10; c++) e[r * 10 + c] = x[r * W + 5 + c]; check("strided copy", e, o, 0, 0);
  vector<uint16_t> bf(N * 10); a.dst = bf.data(); a.dst_dtype = 1; emu_launch(zett_copy_strided, {grid(70), 1}, 256, 0, a); vector<float> back(N * 10); for (int i = 0; i < N * 10; i++) back[i] = zett_bf16_to_f32(bf[i]); check("copy to bf16", e, back, 0, 1.0 / 256);
}
int main() { ce(); norms(true, false); norms(false, false); norms(false, true); acts(); rope(0, 64); rope(0, 16); rope(1, 64); emb(); copy(); printf("fails: %d\n", fails); return fails != 0; }
