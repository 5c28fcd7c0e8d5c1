"""Data sets: Fashion-MNIST (IDX), scikit-learn digits, image folders, ImageNet samples."""
from .datasets import (DataBundle, Split, bundle_from_pixels, find_fashion_mnist, load_dataset, load_dataset_for, load_digits,
                       load_fashion_mnist, load_image_folder)
from .idx import read_idx

__all__ = ["DataBundle", "Split", "bundle_from_pixels", "find_fashion_mnist", "load_dataset", "load_dataset_for", "load_digits",
           "load_fashion_mnist", "load_image_folder", "read_idx"]
