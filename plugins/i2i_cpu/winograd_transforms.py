"""The Winograd transform matrices for 6x6 input tiles (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016, section 4.2; interpolation points 0, 1, -1, 2, -2 and infinity):

    Y = A^T [(G g G^T) * (B^T d B)] A

F(4x4, 3x3) computes a 4x4 output tile from a 3x3 kernel, F(3x3, 4x4) a 3x3 tile from a 4x4 kernel
(a PatchGAN's stride-1 layers); both take 6x6 input tiles, so B^T is shared, and both have 36 products
per tile. Built by the Cook-Toom construction Lavin & Gray use: B^T's rows are the coefficients of
prod_{q != p}(x - q) for each point p (and of the product over all points for infinity), A^T's
columns the powers of each point, G's rows the powers divided by prod_{q != p}(p - q).

Used by :mod:`i2i_cpu.winograd` (and, in C, by ``winograd_kernels.c``). ``i2i export --optimize cpu``
(``i2i_export/cpu_graph.py``) keeps its own copy of F(4x4, 3x3), so that exporting never depends on this
plugin; each is checked against the direct convolution by its own tests.
"""

BT = ((4, 0, -5, 0, 1, 0),
      (0, -4, -4, 1, 1, 0),
      (0, 4, -4, -1, 1, 0),
      (0, -2, -1, 2, 1, 0),
      (0, 2, -1, -2, 1, 0),
      (0, 4, 0, -5, 0, 1))
# F(4x4, 3x3)
G = ((1 / 4, 0, 0),
     (-1 / 6, -1 / 6, -1 / 6),
     (-1 / 6, 1 / 6, -1 / 6),
     (1 / 24, 1 / 12, 1 / 6),
     (1 / 24, -1 / 12, 1 / 6),
     (0, 0, 1))
AT = ((1, 1, 1, 1, 1, 0),
      (0, 1, -1, 2, -2, 0),
      (0, 1, 1, 4, 4, 0),
      (0, 1, -1, 8, -8, 1))
# F(3x3, 4x4)
G4 = ((1 / 4, 0, 0, 0),
      (-1 / 6, -1 / 6, -1 / 6, -1 / 6),
      (-1 / 6, 1 / 6, -1 / 6, 1 / 6),
      (1 / 24, 1 / 12, 1 / 6, 1 / 3),
      (1 / 24, -1 / 12, 1 / 6, -1 / 3),
      (0, 0, 0, 1))
AT3 = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, 2, -2, 0),
       (0, 1, 1, 4, 4, 1))

#: kernel size -> (B^T, G, A^T)
MATRICES = {3: (BT, G, AT), 4: (BT, G4, AT3)}
