"""
TTNN implementation of DPT-Large for Tenstorrent Wormhole (N150 / N300).

Model side: one module per HF stage (embeddings, encoder, reassemble, fusion, head) built from
`ops`; every program/memory/compute/conv config in `configs`; weight preparation and its disk
cache in `weights`; fallback accounting in `fallbacks`; the assembled model in `model`
(TtDPT, build_tt_model). Runtime side: device opening in `device`, eager / trace / trace_2cq
execution and data parallel in `executor`. ttnn is imported lazily inside functions, so
importing this package never needs ttnn.
"""
