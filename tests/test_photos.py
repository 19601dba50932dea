"""Photo patches from scikit-image's images: on the 8-bit grid, seeded, and tested on an image no training patch
comes from."""
import torch

from difflab.data.build import build_dataset
from difflab.data.dataset import DataConfig, to_uint8, to_unit_range
from difflab.data.photos import TEST_IMAGES, TRAIN_IMAGES, photo_patches


def test_photo_patches_are_8_bit_seeded_and_held_out_by_image():
    assert not set(TRAIN_IMAGES) & set(TEST_IMAGES)
    train = build_dataset(DataConfig(name="photos", limit=50))
    test = build_dataset(DataConfig(name="photos", split="test", limit=20))
    assert train.x.shape == (50, 1, 32, 32) and test.x.shape == (20, 1, 32, 32) and train.spec.quantized
    assert torch.equal(to_unit_range(to_uint8(train.x)), train.x)  # on the 8-bit grid
    assert torch.equal(photo_patches("train", 10, seed=3), photo_patches("train", 10, seed=3))
    assert not torch.equal(photo_patches("train", 10, seed=3), photo_patches("train", 10, seed=4))
    assert float(train.x.std()) > 0.1 and float(test.x.std()) > 0.05  # patches, not blank sky
