"""The book's own code: profiles and results to show, figures, the paper's numbers, the
claims' statistics and the chapters' setup. The library it reports on is ``lth_core``."""
