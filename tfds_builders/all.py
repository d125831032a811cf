"""Imports every builder, so `tfds build --imports=synthfactory.tfds_builders.all`
finds them."""
# pylint: disable=unused-import
from synthfactory.tfds_builders.synthetic_fashion_mnist import synthetic_fashion_mnist_dataset_builder
from synthfactory.tfds_builders.synthetic_imagenet import synthetic_imagenet_dataset_builder
from synthfactory.tfds_builders.fashion_mnist_local import fashion_mnist_local_dataset_builder
