"""Data: a data set as uint8 tensors on the training device, its batches, and where its images come from.

===========  ==================================================================================
module       holds
===========  ==================================================================================
dataset      `Dataset` (splits, subsets, the validation split), `batches`, augmentation
loaders      `load_dataset` and the registry of named data sets (digits ... Tiny-ImageNet), offline errors
folders      `folder:` image trees and zips (a CIFAR-10 JPEG copy), `npz:` arrays, their caches
caltech      Caltech-101 for Tab. 3
===========  ==================================================================================
"""
from .caltech import CALTECH_URL, caltech_size, download_caltech101, load_caltech101, split_indices
from .dataset import Dataset, DatasetUnavailable, augment_batch, batches, mix_class_order, to_float
from .loaders import DATASETS, SHAPES, cifar10_jpeg_dirs, load_dataset

__all__ = ["CALTECH_URL", "DATASETS", "SHAPES", "Dataset", "DatasetUnavailable", "augment_batch", "batches",
           "caltech_size", "cifar10_jpeg_dirs", "download_caltech101", "load_caltech101", "load_dataset",
           "mix_class_order", "split_indices", "to_float"]
