"""Data-quality rules of the frame contract and their Great Expectations suite."""
