"""tt-metal's DPT-Large demo: the runner over images and folders, and the PCC evaluation."""
