"""synthetic_imagenet: ImageNet-like images from a diffusion model."""
