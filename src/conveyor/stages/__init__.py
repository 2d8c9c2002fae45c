"""One module per ``dvc.yaml`` stage: a pure core function and a thin ``run`` entry that does the I/O."""

__all__ = ["evaluate", "gate", "ingest", "package", "source", "split", "train", "tune", "validate"]
