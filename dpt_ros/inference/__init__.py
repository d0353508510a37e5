"""One frame's way through the model: preprocess, postprocess, colourise, the model itself."""
