/* The Winograd transforms of i2i_cpu.winograd, each one pass over memory, for F(4x4, 3x3) (m = 4: 3x3
 * kernels) and F(3x3, 4x4) (m = 3: 4x4 kernels). Both take 6x6 input tiles: 36 GEMMs either way.
 *
 * In torch operations each transform is several passes (a convolution or matmul, then permutes and
 * copies into the GEMMs' layout, fold for the overlapping tiles): ~12 of a 256-channel 64x64 layer's
 * ~21 ms forward + backward on a 2-core CPU, against ~10 ms for its 108 GEMMs. Here each reads its
 * input once and writes its output once, in the layout the GEMMs read and write.
 *
 * Built by i2i_cpu/native.py with the system C compiler on first use (cached), loaded with ctypes;
 * without a compiler the torch operations are used. No Python or torch headers: plain C99, float32,
 * contiguous arrays, OpenMP over channels (the process's one OpenMP runtime: torch's libgomp.so.1) on
 * `threads` threads, torch's count for the calling thread (OpenMP's own setting is per thread, and a
 * thread torch did not start would use every core).
 * Each exported function takes m (4 or 3) and the thread count, and calls that size's version of its body
 * (winograd_kernels_tile.h, compiled once per size with the size and matrices as constants).
 *
 * Layouts (n images, c input and k output channels, th x tw tiles a image, T = th * tw, r = 7 - m):
 *   x  (n, c, h0, w0)  the layer's input; the convolution pads it by (ph, pw) with zeros
 *   V  (36, c, n*T)    V[a*6+b][ci][ni*T + ty*tw + tx] = (B^T d B)[a][b] of the tile's 6x6 input d
 *   M  36 x (k, n*T)   the GEMMs' products, one pointer each (they are not copied into one tensor)
 *   y  (n, k, h, w)    Y = A^T M A per m x m tile, tiles overhanging the map cut off, plus the bias
 *   g  (k, c, r, r)    the kernel: U = G g G^T, (36, k, c), or (36, c, k) transposed for dV = U^T dM
 * Backward: dM = A dY A^T (36, k, n*T) from dy (n, k, h, w); dx = B dV B^T per tile, overlapping
 * tiles summed, the padding cut off, from dV 36 x (c, n*T); dg = G^T dU G (k, c, r, r) from dU 36 x (k, c).
 * Matrices: Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016 (section 4.2),
 * interpolation points 0, 1, -1, 2, -2 and infinity for both sizes; the same numbers as
 * winograd_transforms.py.
 */
#include <stdlib.h>
#include <string.h>

static const float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                               {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
/* F(4x4, 3x3) */
static const float AT4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
static const float G3[6][4] = {{1.0f / 4, 0, 0, 0},
                               {-1.0f / 6, -1.0f / 6, -1.0f / 6, 0},
                               {-1.0f / 6, 1.0f / 6, -1.0f / 6, 0},
                               {1.0f / 24, 1.0f / 12, 1.0f / 6, 0},
                               {1.0f / 24, -1.0f / 12, 1.0f / 6, 0},
                               {0, 0, 1, 0}};
/* F(3x3, 4x4) (rows of AT past m and columns of G past r are unused) */
static const float AT3[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 1}, {0}};
static const float G4[6][4] = {{1.0f / 4, 0, 0, 0},
                               {-1.0f / 6, -1.0f / 6, -1.0f / 6, -1.0f / 6},
                               {-1.0f / 6, 1.0f / 6, -1.0f / 6, 1.0f / 6},
                               {1.0f / 24, 1.0f / 12, 1.0f / 6, 1.0f / 3},
                               {1.0f / 24, -1.0f / 12, 1.0f / 6, -1.0f / 3},
                               {0, 0, 0, 1}};

/* Channel pairs go 16 at a time in the weight transforms: their r x r kernels (r*r apart in memory) are
 * copied side by side, so the sums run over 16 pairs in vector registers and write 16 neighbouring
 * places of each of the 36. */
#define LANES 16

#define M 4
#define R 3
#define AT AT4
#define G G3
#define NAME(f) f##_f43
#include "winograd_kernels_tile.h"
#undef M
#undef R
#undef AT
#undef G
#undef NAME

#define M 3
#define R 4
#define AT AT3
#define G G4
#define NAME(f) f##_f34
#include "winograd_kernels_tile.h"
#undef M
#undef R
#undef AT
#undef G
#undef NAME

/* The exported functions: m, the output tile size, is 4 (3x3 kernels) or 3 (4x4 kernels); threads > 0. */

/* V = B^T d B for every tile: x (n, c, h0, w0) -> V (36, c, n*T). */
void winograd_input(const float *x, float *v, int n, int c, int h0, int w0, int ph, int pw, int th, int tw, int m,
                    int threads) {
    (m == 4 ? input_f43 : input_f34)(x, v, n, c, h0, w0, ph, pw, th, tw, threads);
}

/* Y = A^T M A (+ bias) for every tile: M 36 x (k, n*T) -> y (n, k, h, w). bias may be NULL. */
void winograd_output(const float *const *mm, const float *bias, float *y, int n, int k, int h, int w, int th, int tw,
                     int m, int threads) {
    (m == 4 ? output_f43 : output_f34)(mm, bias, y, n, k, h, w, th, tw, threads);
}

/* dM = A dY A^T for every tile: dy (n, k, h, w) -> dm (36, k, n*T); outputs beyond the map read zero. */
void winograd_grad_output(const float *dy, float *dm, int n, int k, int h, int w, int th, int tw, int m, int threads) {
    (m == 4 ? grad_output_f43 : grad_output_f34)(dy, dm, n, k, h, w, th, tw, threads);
}

/* dx = B dV B^T for every tile, overlapping tiles summed and the padding cut off: dV 36 x (c, n*T) -> dx. */
void winograd_grad_input(const float *const *dv, float *dx, int n, int c, int h0, int w0, int ph, int pw, int th,
                         int tw, int m, int threads) {
    (m == 4 ? grad_input_f43 : grad_input_f34)(dv, dx, n, c, h0, w0, ph, pw, th, tw, threads);
}

/* U = G g G^T for every channel pair: g (k, c, r, r) -> u (36, k, c), or (36, c, k) if transposed. */
void winograd_weight(const float *g, float *u, int k, int c, int transposed, int m, int threads) {
    (m == 4 ? weight_f43 : weight_f34)(g, u, k, c, transposed, threads);
}

/* dg = G^T dU G for every channel pair: dU 36 x (k, c) -> dg (k, c, r, r). */
void winograd_grad_weight(const float *const *du, float *dg, int k, int c, int m, int threads) {
    (m == 4 ? grad_weight_f43 : grad_weight_f34)(du, dg, k, c, threads);
}
