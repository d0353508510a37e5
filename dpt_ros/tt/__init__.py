"""TTNN implementation of DPT-Large for Tenstorrent Wormhole (N150 / N300).

One module per HF stage (embeddings, encoder, reassemble, fusion, head), all configs in
`configs`, weight preparation + disk cache in `weights`, fallback accounting in `fallbacks`,
the assembled model in `model` (TtDPT, build_tt_model). ttnn is imported lazily inside the
functions, so importing this package never needs ttnn.
"""
