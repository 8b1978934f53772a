"""Harness that runs pyzmq's own green test classes with every socket a
``SharedSocket`` (``python -m tests.pyzmq_suite.run``; ``tox -e dropin``)."""
