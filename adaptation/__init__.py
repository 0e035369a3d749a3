"""Domain adaptation (DANN) for networks that nnaudit verifies and attacks."""
