"""Predictors and recurrent cells, installed as ``predlearn.zoo``."""
