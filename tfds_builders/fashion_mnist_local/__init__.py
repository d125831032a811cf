"""fashion_mnist_local: real Fashion-MNIST from local idx files, as a TFDS dataset."""
