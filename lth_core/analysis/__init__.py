"""What is measured on trained stages: the paper's metrics (Table 2) and trajectory lengths."""
