"""CNN activations of images, extracted and stored (paper §6.1, §7.2)."""
