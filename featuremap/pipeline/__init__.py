"""The pipeline language: the YAML file, read within bounds, checked key by key, parsed once
into a typed :class:`Pipeline` (DESIGN section 5)."""

from featuremap.pipeline.pipeline import InputSpec, OutputSpec, Pipeline, load_pipeline

__all__ = ["InputSpec", "OutputSpec", "Pipeline", "load_pipeline"]
