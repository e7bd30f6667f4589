"""Applications built on the library: the demo dataset and the PNG previews."""
