"""synthetic_fashion_mnist: Fashion-MNIST-like images from a diffusion model."""
