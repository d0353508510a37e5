"""One frame's way through the model: preprocess, backend call, postprocess, colourise."""
