"""Serving: inference.py (the SageMaker handlers), the model server with the SageMaker container contract."""
