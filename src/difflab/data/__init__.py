"""Datasets as in-memory tensors: MNIST, image folders, .npz arrays and 2-D toy sets."""
from difflab.data.arrays import load_npz
from difflab.data.build import build_dataset
from difflab.data.dataset import DATASET_NAMES, IMAGE_SETS, TOY_SETS, DataConfig, ImageData, to_uint8, to_unit_range
from difflab.data.folder import load_folder
from difflab.data.mnist import cache_dir, load_mnist
from difflab.data.toy import GaussianMixture, eight_mode_ring, gaussian_mixture, swiss_roll, two_moons

__all__ = [
    "DATASET_NAMES", "IMAGE_SETS", "TOY_SETS", "DataConfig", "GaussianMixture", "ImageData",
    "build_dataset", "cache_dir", "eight_mode_ring", "gaussian_mixture", "load_folder", "load_mnist",
    "load_npz", "swiss_roll", "to_uint8", "to_unit_range", "two_moons",
]
