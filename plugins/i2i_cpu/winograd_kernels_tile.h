/* The transforms for one tile size, included by winograd_kernels.c once for F(4x4, 3x3) and once for
 * F(3x3, 4x4) with these defined as constants (not function arguments: inside an OpenMP region an
 * argument would reach the outlined loop body as a run-time value, and the tile loops would neither
 * unroll nor vectorise; a generic version measured up to 8x slower):
 *   M        output tile size (4 or 3); R = 7 - M, the kernel size
 *   AT, G    that size's A^T (M x 6) and G (6 x R)
 *   NAME(f)  f with the size's suffix
 * Layouts and formulas: winograd_kernels.c.
 */
/* V = B^T d B for every tile: x (n, c, h0, w0) -> V (36, c, n*T). */
static void NAME(input)(const float *x, float *v, int n, int c, int h0, int w0, int ph, int pw, int th, int tw, int threads) {
    const long T = (long)th * tw, cols = (long)n * T, wp = (long)M * tw + 6 - M;
#pragma omp parallel num_threads(threads)
    {
        float *rows = malloc(sizeof(float) * (12 * wp + 6 * tw)); /* 6 padded input rows, 6 combined, taps */
        float *r = rows, *t = rows + 6 * wp, *taps = rows + 12 * wp;
#pragma omp for schedule(static)
        for (long job = 0; job < (long)n * c; job++) {
            const long ni = job / c, ci = job % c;
            const float *plane = x + job * h0 * w0;
            for (int ty = 0; ty < th; ty++) {
                for (int i = 0; i < 6; i++) { /* input row M*ty + i - ph, zero outside the map */
                    float *ri = r + i * wp;
                    const int yy = M * ty + i - ph;
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
                for (int a = 0; a < 6; a++) { /* columns: V[a][b] = sum_j t_a[M tx + j] BT[b][j] */
                    const float *ta = t + a * wp;
                    for (int tx = 0; tx < tw; tx++) /* tap j of every tile side by side: vector loads below */
                        for (int j = 0; j < 6; j++) taps[j * tw + tx] = ta[M * tx + j];
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
static void NAME(output)(const float *const *mm, const float *bias, float *y, int n, int k, int h, int w, int th, int tw, int threads) {
    const long T = (long)th * tw, cols = (long)n * T;
#pragma omp parallel num_threads(threads)
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
                    for (int q = 0; q < M; q++) {
                        float *sq = s + (a * 4 + q) * tw;
                        for (int tx = 0; tx < tw; tx++) {
                            float acc = 0;
                            for (int b = 0; b < 6; b++) acc += AT[q][b] * mm[a * 6 + b][at + tx];
                            sq[tx] = acc;
                        }
                    }
                for (int p = 0; p < M && M * ty + p < h; p++) { /* rows: y[p][q] = sum_a AT[p][a] s[a][q] */
                    for (int q = 0; q < M; q++) {
                        float *zq = z + q * tw; /* vectorised over the tiles, then interleaved into the row */
                        for (int tx = 0; tx < tw; tx++) {
                            float acc = b0;
                            for (int a = 0; a < 6; a++) acc += AT[p][a] * s[(a * 4 + q) * tw + tx];
                            zq[tx] = acc;
                        }
                    }
                    for (int tx = 0; tx < tw; tx++)
                        for (int q = 0; q < M; q++) row[M * tx + q] = z[q * tw + tx];
                    memcpy(plane + (long)(M * ty + p) * w, row, sizeof(float) * w); /* overhang cut off */
                }
            }
        }
        free(s);
    }
}


/* dM = A dY A^T for every tile: dy (n, k, h, w) -> dm (36, k, n*T); outputs beyond the map read zero. */
static void NAME(grad_output)(const float *dy, float *dm, int n, int k, int h, int w, int th, int tw, int threads) {
    const long T = (long)th * tw, cols = (long)n * T, wt = (long)M * tw;
#pragma omp parallel num_threads(threads)
    {
        float *buf = malloc(sizeof(float) * 10 * wt); /* M padded rows of dY, then 6 combined rows */
        float *r = buf, *u = buf + 4 * wt;
#pragma omp for schedule(static)
        for (long job = 0; job < (long)n * k; job++) {
            const long ni = job / k, o = job % k;
            const float *plane = dy + job * h * w;
            for (int ty = 0; ty < th; ty++) {
                for (int p = 0; p < M; p++) {
                    float *rp = r + p * wt;
                    memset(rp, 0, sizeof(float) * wt);
                    if (M * ty + p < h) memcpy(rp, plane + (long)(M * ty + p) * w, sizeof(float) * w);
                }
                for (int a = 0; a < 6; a++) { /* rows: u_a = sum_p AT[p][a] dY_p */
                    float *ua = u + a * wt;
                    for (long col = 0; col < wt; col++) {
                        float acc = 0;
                        for (int p = 0; p < M; p++) acc += AT[p][a] * r[p * wt + col];
                        ua[col] = acc;
                    }
                }
                /* columns: dM[a][b] = sum_q u_a[M tx + q] AT[q][b] (M taps a tile, no overlap: the
                 * compiler's strided loads are faster here than a copy of each tap side by side) */
                for (int a = 0; a < 6; a++)
                    for (int b = 0; b < 6; b++) {
                        float *out = dm + ((long)(a * 6 + b) * k + o) * cols + ni * T + (long)ty * tw;
                        const float *ua = u + a * wt;
                        for (int tx = 0; tx < tw; tx++) {
                            float acc = 0;
                            for (int q = 0; q < M; q++) acc += AT[q][b] * ua[M * tx + q];
                            out[tx] = acc;
                        }
                    }
            }
        }
        free(buf);
    }
}


/* dx = B dV B^T for every tile, the 6x6 tiles (overlapping by 6 - M) summed and the padding cut off:
 * dV 36 x (c, n*T) -> dx (n, c, h0, w0). */
static void NAME(grad_input)(const float *const *dv, float *dx, int n, int c, int h0, int w0, int ph, int pw, int th, int tw, int threads) {
    const long T = (long)th * tw, cols = (long)n * T, hp = (long)M * th + 6 - M, wp = (long)M * tw + 6 - M;
#pragma omp parallel num_threads(threads)
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
                for (int i = 0; i < 6; i++) { /* rows: plane[M ty + i][M tx + j] += sum_a BT[a][i] q[a][j] */
                    for (int j = 0; j < 6; j++) {
                        float *zj = z + j * tw; /* vectorised over the tiles, then added into the row */
                        for (int tx = 0; tx < tw; tx++) {
                            float s = 0;
                            for (int a = 0; a < 6; a++) s += BT[a][i] * q[(a * 6 + j) * tw + tx];
                            zj[tx] = s;
                        }
                    }
                    float *row = acc + ((long)M * ty + i) * wp;
                    /* columns 0 to M-1 of each tile, then M to 5 (which overlap the next tile's first):
                     * each pass writes disjoint places */
                    for (int tx = 0; tx < tw; tx++)
                        for (int j = 0; j < M; j++) row[M * tx + j] += z[j * tw + tx];
                    for (int tx = 0; tx < tw; tx++)
                        for (int j = M; j < 6; j++) row[M * tx + j] += z[j * tw + tx];
                }
            }
            float *plane = dx + job * h0 * w0;
            for (int yy = 0; yy < h0; yy++) memcpy(plane + (long)yy * w0, acc + (yy + ph) * wp + pw, sizeof(float) * w0);
        }
        free(q);
    }
}


/* U = G g G^T for `count` channel pairs whose kernels start `stride` floats apart at g, written to
 * u[ab * plane + l] for pair l. */
static void NAME(weight_rows)(const float *g, long stride, long count, float *u, long plane) {
    for (long r0 = 0; r0 < count; r0 += LANES) {
        const int lanes = count - r0 < LANES ? (int)(count - r0) : LANES;
        float gt[16][LANES] = {{0}}, t[6][4][LANES];
        for (int l = 0; l < lanes; l++)
            for (int e = 0; e < R * R; e++) gt[e][l] = g[(r0 + l) * stride + e];
        for (int a = 0; a < 6; a++) /* t = G g */
            for (int s = 0; s < R; s++)
                for (int l = 0; l < LANES; l++) {
                    float acc = 0;
                    for (int i = 0; i < R; i++) acc += G[a][i] * gt[i * R + s][l];
                    t[a][s][l] = acc;
                }
        for (int a = 0; a < 6; a++) /* U = t G^T */
            for (int b = 0; b < 6; b++) {
                float out[LANES];
                for (int l = 0; l < LANES; l++) {
                    float acc = 0;
                    for (int s = 0; s < R; s++) acc += t[a][s][l] * G[b][s];
                    out[l] = acc;
                }
                memcpy(u + (a * 6 + b) * plane + r0, out, sizeof(float) * lanes);
            }
    }
}

static void NAME(weight)(const float *g, float *u, int k, int c, int transposed, int threads) {
    const long kc = (long)k * c;
    if (transposed) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (long ci = 0; ci < c; ci++) NAME(weight_rows)(g + ci * R * R, (long)c * R * R, k, u + ci * k, kc);
    } else {
        const long chunk = (kc / LANES + 63) / 64 * LANES + LANES; /* whole blocks of pairs a job, >= 1 */
#pragma omp parallel for schedule(static) num_threads(threads)
        for (long r0 = 0; r0 < kc; r0 += chunk)
            NAME(weight_rows)(g + r0 * R * R, R * R, kc - r0 < chunk ? kc - r0 : chunk, u + r0, kc);
    }
}


/* dg = G^T dU G for every channel pair: dU 36 x (k, c) -> dg (k, c, r, r). */
static void NAME(grad_weight)(const float *const *du, float *dg, int k, int c, int threads) {
    const long kc = (long)k * c;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long r0 = 0; r0 < kc; r0 += LANES) {
        const int lanes = kc - r0 < LANES ? (int)(kc - r0) : LANES;
        float d[36][LANES] = {{0}}, t[4][6][LANES], out[LANES][16];
        for (int ab = 0; ab < 36; ab++) memcpy(d[ab], du[ab] + r0, sizeof(float) * lanes);
        for (int r = 0; r < R; r++) /* t = G^T dU */
            for (int b = 0; b < 6; b++)
                for (int l = 0; l < LANES; l++) {
                    float s = 0;
                    for (int a = 0; a < 6; a++) s += G[a][r] * d[a * 6 + b][l];
                    t[r][b][l] = s;
                }
        for (int r = 0; r < R; r++) /* dg = t G */
            for (int s = 0; s < R; s++)
                for (int l = 0; l < LANES; l++) {
                    float acc = 0;
                    for (int b = 0; b < 6; b++) acc += t[r][b][l] * G[b][s];
                    out[l][r * R + s] = acc;
                }
        for (int l = 0; l < lanes; l++) memcpy(dg + (r0 + l) * R * R, out[l], sizeof(float) * R * R);
    }
}

