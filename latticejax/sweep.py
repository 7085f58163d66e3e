"""`python -m latticejax.sweep` is `python -m latticejax.train.sweep` (a grid of runs)."""

from absl import app

from latticejax.train.sweep import main

if __name__ == "__main__":
    app.run(main)
