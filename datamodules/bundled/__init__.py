"""Real MNIST test digits shipped for the quickstart and offline demos."""
