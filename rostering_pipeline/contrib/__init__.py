"""Opt-in extras that are not part of the code location: nothing under defs/ imports them.

`forkserver_launcher` is a Dagster instance plugin (a run launcher) built on Dagster's private
modules; it is off by default and pinned to one Dagster version (see its module docstring and
rostering_pipeline_tests/operations/test_forkserver_launcher.py).
"""
