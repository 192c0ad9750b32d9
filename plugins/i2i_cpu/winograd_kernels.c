/* The four Winograd F(4x4, 3x3) transforms of i2i_cpu.winograd, each one pass over memory.
 *
 * In torch operations each transform is several passes (a convolution or matmul, then permutes and
 * copies into the GEMMs' layout, fold for the overlapping tiles): ~12 of a 256-channel 64x64 layer's
 * ~21 ms forward + backward on a 2-core CPU, against ~10 ms for its 108 GEMMs. Here each reads its
 * input once and writes its output once, in the layout the GEMMs read and write.
 *
 * Built by i2i_cpu/native.py with the system C compiler on first use (cached), loaded with ctypes;
 * without a compiler the torch operations are used. No Python or torch headers: plain C99, float32,
 * contiguous arrays, OpenMP over channels (the process's one OpenMP runtime: torch's libgomp.so.1).
 *
 * Layouts (n images, c input and k output channels, th x tw tiles a image, T = th * tw):
 *   x  (n, c, h0, w0)  the layer's input; the convolution pads it by (ph, pw) with zeros
 *   V  (36, c, n*T)    V[a*6+b][ci][ni*T + ty*tw + tx] = (B^T d B)[a][b] of the tile's 6x6 input d
 *   M  36 x (k, n*T)   the GEMMs' products, one pointer each (they are not copied into one tensor)
 *   y  (n, k, h, w)    Y = A^T M A per tile, tiles overhanging the map cut off, plus the bias
 * Backward: dM = A dY A^T (36, k, n*T) from dy (n, k, h, w); dx = B dV B^T per tile, overlapping
 * tiles summed, the padding cut off, from dV 36 x (c, n*T); dg = G^T dU G (k, c, 3, 3) from dU 36 x (k, c).
 * Matrices: Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016 (section 4.2);
 * the same numbers as winograd_transforms.py.
 */
#include <stdlib.h>
#include <string.h>

static const float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                               {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const float G[6][3] = {{1.0f / 4, 0, 0},
                              {-1.0f / 6, -1.0f / 6, -1.0f / 6},
                              {-1.0f / 6, 1.0f / 6, -1.0f / 6},
                              {1.0f / 24, 1.0f / 12, 1.0f / 6},
                              {1.0f / 24, -1.0f / 12, 1.0f / 6},
                              {0, 0, 1}};
static const float AT[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};

/* V = B^T d B for every tile: x (n, c, h0, w0) -> V (36, c, n*T). */
void winograd_input(const float *x, float *v, int n, int c, int h0, int w0, int ph, int pw, int th, int tw) {
    const long T = (long)th * tw, cols = (long)n * T, wp = 4L * tw + 2;
#pragma omp parallel
    {
        float *rows = malloc(sizeof(float) * (12 * wp + 6 * tw)); /* 6 padded input rows, 6 combined, taps */
        float *r = rows, *t = rows + 6 * wp, *taps = rows + 12 * wp;
#pragma omp for schedule(static)
        for (long job = 0; job < (long)n * c; job++) {
            const long ni = job / c, ci = job % c;
            const float *plane = x + job * h0 * w0;
            for (int ty = 0; ty < th; ty++) {
                for (int i = 0; i < 6; i++) { /* input row 4*ty + i - ph, zero outside the map */
                    float *ri = r + i * wp;
                    const int yy = 4 * ty + i - ph;
                    memset(ri, 0, sizeof(float) * wp);
                    if (yy >= 0 && yy < h0) {
                        const int x0 = pw, x1 = (w0 + pw < wp) ? w0 + pw : (int)wp; /* columns of the map */
                        memcpy(ri + x0, plane + (long)yy * w0, sizeof(float) * (x1 - x0));
                    }
                }
                for (int a = 0; a < 6; a++) { /* rows: t_a = sum_i BT[a][i] r_i */
                    float *ta = t + a * wp;
                    for (long col = 0; col < wp; col++) {
                        float s = 0;
                        for (int i = 0; i < 6; i++) s += BT[a][i] * r[i * wp + col];
                        ta[col] = s;
                    }
                }
                for (int a = 0; a < 6; a++) { /* columns: V[a][b] = sum_j t_a[4 tx + j] BT[b][j] */
                    const float *ta = t + a * wp;
                    for (int tx = 0; tx < tw; tx++) /* tap j of every tile side by side: vector loads below */
                        for (int j = 0; j < 6; j++) taps[j * tw + tx] = ta[4 * tx + j];
                    for (int b = 0; b < 6; b++) {
                        float *out = v + ((long)(a * 6 + b) * c + ci) * cols + ni * T + (long)ty * tw;
                        for (int tx = 0; tx < tw; tx++) {
                            float s = 0;
                            for (int j = 0; j < 6; j++) s += BT[b][j] * taps[j * tw + tx];
                            out[tx] = s;
                        }
                    }
                }
            }
        }
        free(rows);
    }
}

/* Y = A^T M A (+ bias) for every tile: M 36 x (k, n*T) -> y (n, k, h, w). bias may be NULL. */
void winograd_output(const float *const *m, const float *bias, float *y, int n, int k, int h, int w, int th,
                     int tw) {
    const long T = (long)th * tw, cols = (long)n * T;
#pragma omp parallel
    {
        float *s = malloc(sizeof(float) * 32 * tw); /* s[a][q][tx], z[q][tx], one output row */
        float *z = s + 24 * tw, *row = s + 28 * tw;
#pragma omp for schedule(static)
        for (long job = 0; job < (long)n * k; job++) {
            const long ni = job / k, o = job % k;
            const float b0 = bias ? bias[o] : 0.0f;
            float *plane = y + job * h * w;
            for (int ty = 0; ty < th; ty++) {
                const long at = o * cols + ni * T + (long)ty * tw;
                for (int a = 0; a < 6; a++) /* columns: s[a][q] = sum_b M[a][b] AT[q][b] */
                    for (int q = 0; q < 4; q++) {
                        float *sq = s + (a * 4 + q) * tw;
                        for (int tx = 0; tx < tw; tx++) {
                            float acc = 0;
                            for (int b = 0; b < 6; b++) acc += AT[q][b] * m[a * 6 + b][at + tx];
                            sq[tx] = acc;
                        }
                    }
                for (int p = 0; p < 4 && 4 * ty + p < h; p++) { /* rows: y[p][q] = sum_a AT[p][a] s[a][q] */
                    for (int q = 0; q < 4; q++) {
                        float *zq = z + q * tw; /* vectorised over the tiles, then interleaved into the row */
                        for (int tx = 0; tx < tw; tx++) {
                            float acc = b0;
                            for (int a = 0; a < 6; a++) acc += AT[p][a] * s[(a * 4 + q) * tw + tx];
                            zq[tx] = acc;
                        }
                    }
                    for (int tx = 0; tx < tw; tx++)
                        for (int q = 0; q < 4; q++) row[4 * tx + q] = z[q * tw + tx];
                    memcpy(plane + (long)(4 * ty + p) * w, row, sizeof(float) * w); /* overhang cut off */
                }
            }
        }
        free(s);
    }
}

/* dM = A dY A^T for every tile: dy (n, k, h, w) -> dm (36, k, n*T); outputs beyond the map read zero. */
void winograd_grad_output(const float *dy, float *dm, int n, int k, int h, int w, int th, int tw) {
    const long T = (long)th * tw, cols = (long)n * T, wt = 4L * tw;
#pragma omp parallel
    {
        float *buf = malloc(sizeof(float) * 10 * wt); /* 4 padded rows of dY, then 6 combined rows */
        float *r = buf, *u = buf + 4 * wt;
#pragma omp for schedule(static)
        for (long job = 0; job < (long)n * k; job++) {
            const long ni = job / k, o = job % k;
            const float *plane = dy + job * h * w;
            for (int ty = 0; ty < th; ty++) {
                for (int p = 0; p < 4; p++) {
                    float *rp = r + p * wt;
                    memset(rp, 0, sizeof(float) * wt);
                    if (4 * ty + p < h) memcpy(rp, plane + (long)(4 * ty + p) * w, sizeof(float) * w);
                }
                for (int a = 0; a < 6; a++) { /* rows: u_a = sum_p AT[p][a] dY_p */
                    float *ua = u + a * wt;
                    for (long col = 0; col < wt; col++) {
                        float acc = 0;
                        for (int p = 0; p < 4; p++) acc += AT[p][a] * r[p * wt + col];
                        ua[col] = acc;
                    }
                }
                /* columns: dM[a][b] = sum_q u_a[4 tx + q] AT[q][b] (four taps a tile, no overlap: the
                 * compiler's stride-4 loads are faster here than a copy of each tap side by side) */
                for (int a = 0; a < 6; a++)
                    for (int b = 0; b < 6; b++) {
                        float *out = dm + ((long)(a * 6 + b) * k + o) * cols + ni * T + (long)ty * tw;
                        const float *ua = u + a * wt;
                        for (int tx = 0; tx < tw; tx++) {
                            float acc = 0;
                            for (int q = 0; q < 4; q++) acc += AT[q][b] * ua[4 * tx + q];
                            out[tx] = acc;
                        }
                    }
            }
        }
        free(buf);
    }
}

/* dx = B dV B^T for every tile, the 6x6 tiles (overlapping by 2) summed and the padding cut off:
 * dV 36 x (c, n*T) -> dx (n, c, h0, w0). */
void winograd_grad_input(const float *const *dv, float *dx, int n, int c, int h0, int w0, int ph, int pw, int th,
                         int tw) {
    const long T = (long)th * tw, cols = (long)n * T, hp = 4L * th + 2, wp = 4L * tw + 2;
#pragma omp parallel
    {
        float *q = malloc(sizeof(float) * (42 * tw + hp * wp)); /* q[a][j][tx], z[j][tx], the padded plane */
        float *z = q + 36 * tw, *acc = q + 42 * tw;
#pragma omp for schedule(static)
        for (long job = 0; job < (long)n * c; job++) {
            const long ni = job / c, ci = job % c;
            memset(acc, 0, sizeof(float) * hp * wp);
            for (int ty = 0; ty < th; ty++) {
                const long at = ci * cols + ni * T + (long)ty * tw;
                for (int a = 0; a < 6; a++) /* columns: q[a][j] = sum_b dV[a][b] BT[b][j] */
                    for (int j = 0; j < 6; j++) {
                        float *qj = q + (a * 6 + j) * tw;
                        for (int tx = 0; tx < tw; tx++) {
                            float s = 0;
                            for (int b = 0; b < 6; b++) s += BT[b][j] * dv[a * 6 + b][at + tx];
                            qj[tx] = s;
                        }
                    }
                for (int i = 0; i < 6; i++) { /* rows: plane[4 ty + i][4 tx + j] += sum_a BT[a][i] q[a][j] */
                    for (int j = 0; j < 6; j++) {
                        float *zj = z + j * tw; /* vectorised over the tiles, then added into the row */
                        for (int tx = 0; tx < tw; tx++) {
                            float s = 0;
                            for (int a = 0; a < 6; a++) s += BT[a][i] * q[(a * 6 + j) * tw + tx];
                            zj[tx] = s;
                        }
                    }
                    float *row = acc + (4L * ty + i) * wp;
                    /* columns 0-3 of each tile, then 4-5 (which overlap the next tile's 0-1): each pass
                     * writes disjoint places */
                    for (int tx = 0; tx < tw; tx++)
                        for (int j = 0; j < 4; j++) row[4 * tx + j] += z[j * tw + tx];
                    for (int tx = 0; tx < tw; tx++)
                        for (int j = 4; j < 6; j++) row[4 * tx + j] += z[j * tw + tx];
                }
            }
            float *plane = dx + job * h0 * w0;
            for (int yy = 0; yy < h0; yy++) memcpy(plane + (long)yy * w0, acc + (yy + ph) * wp + pw, sizeof(float) * w0);
        }
        free(q);
    }
}

/* Channel pairs go 16 at a time: their 3x3 kernels (9 apart in memory) are copied side by side, so the
 * sums below run over 16 pairs in vector registers and write 16 neighbouring places of each of the 36. */
#define LANES 16

/* U = G g G^T for `count` channel pairs whose 3x3 kernels start `stride` floats apart at g, written to
 * u[ab * plane + l] for pair l. */
static void weight_rows(const float *g, long stride, long count, float *u, long plane) {
    for (long r0 = 0; r0 < count; r0 += LANES) {
        const int lanes = count - r0 < LANES ? (int)(count - r0) : LANES;
        float gt[9][LANES] = {{0}}, t[6][3][LANES];
        for (int l = 0; l < lanes; l++)
            for (int e = 0; e < 9; e++) gt[e][l] = g[(r0 + l) * stride + e];
        for (int a = 0; a < 6; a++) /* t = G g */
            for (int s = 0; s < 3; s++)
                for (int l = 0; l < LANES; l++)
                    t[a][s][l] = G[a][0] * gt[s][l] + G[a][1] * gt[3 + s][l] + G[a][2] * gt[6 + s][l];
        for (int a = 0; a < 6; a++) /* U = t G^T */
            for (int b = 0; b < 6; b++) {
                float out[LANES];
                for (int l = 0; l < LANES; l++) out[l] = t[a][0][l] * G[b][0] + t[a][1][l] * G[b][1] + t[a][2][l] * G[b][2];
                memcpy(u + (a * 6 + b) * plane + r0, out, sizeof(float) * lanes);
            }
    }
}

/* U = G g G^T for every channel pair: g (k, c, 3, 3) -> u (36, k, c), or (36, c, k) if transposed
 * (U^T, for dV = U^T dM). */
void winograd_weight(const float *g, float *u, int k, int c, int transposed) {
    const long kc = (long)k * c;
    if (transposed) {
#pragma omp parallel for schedule(static)
        for (long ci = 0; ci < c; ci++) weight_rows(g + ci * 9, (long)c * 9, k, u + ci * k, kc);
    } else {
        const long chunk = (kc / LANES + 63) / 64 * LANES; /* whole blocks of pairs a job */
#pragma omp parallel for schedule(static)
        for (long r0 = 0; r0 < kc; r0 += chunk)
            weight_rows(g + r0 * 9, 9, kc - r0 < chunk ? kc - r0 : chunk, u + r0, kc);
    }
}

/* dg = G^T dU G for every channel pair: dU 36 x (k, c) -> dg (k, c, 3, 3). */
void winograd_grad_weight(const float *const *du, float *dg, int k, int c) {
    const long kc = (long)k * c;
#pragma omp parallel for schedule(static)
    for (long r0 = 0; r0 < kc; r0 += LANES) {
        const int lanes = kc - r0 < LANES ? (int)(kc - r0) : LANES;
        float d[36][LANES] = {{0}}, t[3][6][LANES], out[LANES][9];
        for (int ab = 0; ab < 36; ab++) memcpy(d[ab], du[ab] + r0, sizeof(float) * lanes);
        for (int r = 0; r < 3; r++) /* t = G^T dU */
            for (int b = 0; b < 6; b++)
                for (int l = 0; l < LANES; l++) {
                    float s = 0;
                    for (int a = 0; a < 6; a++) s += G[a][r] * d[a * 6 + b][l];
                    t[r][b][l] = s;
                }
        for (int r = 0; r < 3; r++) /* dg = t G */
            for (int s = 0; s < 3; s++)
                for (int l = 0; l < LANES; l++) {
                    float acc = 0;
                    for (int b = 0; b < 6; b++) acc += t[r][b][l] * G[b][s];
                    out[l][r * 3 + s] = acc;
                }
        memcpy(dg + r0 * 9, out, sizeof(float) * 9 * lanes);
    }
}
