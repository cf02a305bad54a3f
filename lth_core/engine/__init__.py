"""Algorithm 1 and how it is run: one-run training, the vectorised population, the search
loop, seeding, and CPU worker processes."""
