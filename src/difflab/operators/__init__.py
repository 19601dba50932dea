"""Linear measurement operators y = A x + n on images, each with its own classical reconstructions and view; they
import only torch, so conditions, inverse problems and benchmarks all stand on them."""
from difflab.operators.images import Blur, Downsample, Inpaint, gaussian_kernel
from difflab.operators.mri import MRI, cartesian_mask
from difflab.operators.operator import Operator
from difflab.operators.radon import Radon, view_angles
from difflab.operators.tv import tv_least_squares

__all__ = ["Operator", "Inpaint", "Downsample", "Blur", "MRI", "Radon", "gaussian_kernel", "cartesian_mask",
           "view_angles", "tv_least_squares"]
