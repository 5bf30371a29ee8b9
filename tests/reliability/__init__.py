"""Adversarial reliability suite: fuzz, load, fault, tamper, auth and bad-input tests against a real
``bentoml serve`` on 127.0.0.1 (bounded in count and time; see conftest.py for the shared server)."""
