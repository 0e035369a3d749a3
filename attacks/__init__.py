"""Gradient-based adversarial attacks on ONNX networks."""
