"""Verification: complete VNN-LIB verification and region safety (DLV)."""
