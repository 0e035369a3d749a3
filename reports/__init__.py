"""Versioned JSON results and self-contained HTML reports."""
