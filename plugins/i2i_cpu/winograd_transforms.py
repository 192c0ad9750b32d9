"""The Winograd F(4x4, 3x3) transform matrices (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016, section 4.2), for a 4x4 output tile from a 6x6 input tile and a 3x3 kernel:

    Y = A^T [(G g G^T) * (B^T d B)] A

Used by :mod:`i2i_cpu.winograd`. ``i2i export --optimize cpu`` (``i2i_export/cpu_graph.py``) keeps its
own copy, so that exporting never depends on this plugin; each is checked against the direct
convolution by its own tests.
"""

BT = ((4, 0, -5, 0, 1, 0),
      (0, -4, -4, 1, 1, 0),
      (0, 4, -4, -1, 1, 0),
      (0, -2, -1, 2, 1, 0),
      (0, 2, -1, -2, 1, 0),
      (0, 4, 0, -5, 0, 1))
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
