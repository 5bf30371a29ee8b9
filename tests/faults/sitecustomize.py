"""Fault injection for release tests, loaded by every Python process of a test server (PYTHONPATH=tests/faults).

``KIT_TEST_HANG_TAG=name:version`` makes that version's predictions block for an hour: a challenger that
hangs. Nothing happens without the variable.
"""

import os

if os.environ.get("KIT_TEST_HANG_TAG"):
    import time

    from kit.serving import _model

    _hang = os.environ["KIT_TEST_HANG_TAG"]
    _predict_rows = _model.ServedModel.predict_rows

    def _hanging(self, rows):  # type: ignore[no-untyped-def]
        if self.tag == _hang:
            time.sleep(3600)
        return _predict_rows(self, rows)

    _model.ServedModel.predict_rows = _hanging
