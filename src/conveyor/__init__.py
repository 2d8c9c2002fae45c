"""Conveyor: raw tabular data to an accepted, deployable model."""
