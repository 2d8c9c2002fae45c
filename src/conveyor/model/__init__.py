"""The model: the estimator registry, the features, the pipeline, its metrics, predictions and ONNX form.

Submodules are not imported here: the registry is read by every stage's config, and must not
pay for scikit-learn's import.
"""

__all__ = ["estimators", "features", "metrics", "onnx", "pipeline", "predict", "registry", "transformers"]
