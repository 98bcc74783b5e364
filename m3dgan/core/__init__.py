"""The modality-independent part of M3D-GAN: universal attention module, losses, objectives,
and the model that wires modality subnets around them."""
