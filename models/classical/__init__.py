"""Classical pansharpening methods; importing this package registers them all.

Definitions follow Vivone et al., "A new benchmark based on recent advances in
multispectral pansharpening", IEEE GRSM 2021, and its toolbox.
"""

from models.classical import brovey, bth, cs, cs_regression, exp, mra  # noqa: F401
