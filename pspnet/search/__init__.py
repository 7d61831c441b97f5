"""`python -m pspnet.search`: hyper-parameter search over pspnet.train with Optuna (see cli.py)."""
