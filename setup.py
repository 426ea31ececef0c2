# All metadata lives in setup.cfg; this shim keeps `pip install -e .` working on old tool chains.
from setuptools import setup

setup()
