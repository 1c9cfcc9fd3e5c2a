"""mavae: Manifold-Anchored Variational AutoEncoders."""
