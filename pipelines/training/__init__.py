"""Training: train.py (local and SageMaker script mode), evaluation metrics and splits, the reference baseline."""
