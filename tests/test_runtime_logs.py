"""The runtime's loggers: `logging` stays unimported until a record could be emitted, and records name their real caller."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

from digitvae.runtime import DigitVAE
from digitvae.runtime.logs import get_logger


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=True
    )


def test_loading_and_generating_import_no_logging_that_onnxruntime_and_numpy_do_not() -> None:
    before = _python("import sys, numpy, onnxruntime; print('logging' in sys.modules)").stdout.strip()
    found = _python(
        """
        import sys
        from digitvae.runtime import DigitVAE
        vae = DigitVAE.load()
        vae.reconstruct(vae.generate(40, seed=1))
        print('logging' in sys.modules)
        """
    )
    assert found.stdout.strip() == before
    assert found.stderr == ""


def test_a_warning_is_printed_without_logging_being_configured() -> None:
    found = _python(
        """
        import sys
        from digitvae.runtime.logs import get_logger
        log = get_logger("digitvae.runtime.somewhere")
        log.debug("not shown %s", 1)
        log.info("not shown %s", 2)
        print('logging' in sys.modules)
        log.warning("careful: %s", 3)
        """
    )
    assert found.stdout == "False\n"
    assert found.stderr == "careful: 3\n"  # logging's last-resort handler, as for any unconfigured logger


def test_records_go_to_the_named_logger_with_their_callers_line() -> None:
    found = _python(
        """
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s %(funcName)s %(lineno)d %(message)s")
        from digitvae.runtime.logs import get_logger

        def caller():
            log = get_logger("digitvae.x")
            log.debug("a %s", 1)
            log.info("b")
            log.warning("c")

        caller()
        """
    )
    assert found.stderr.splitlines() == [
        "DEBUG digitvae.x caller 8 a 1",
        "INFO digitvae.x caller 9 b",
        "WARNING digitvae.x caller 10 c",
    ]


def test_a_level_set_on_the_runtimes_logger_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="digitvae.runtime"):
        DigitVAE.load()
        get_logger("digitvae.runtime.x").debug("hidden")
    loaded = [r for r in caplog.records if r.getMessage().startswith("loaded mnist-vae")]
    assert len(loaded) == 1
    assert loaded[0].name == "digitvae.runtime.inference.model"
    assert loaded[0].funcName == "from_options"
    assert loaded[0].pathname.endswith("model.py")
    assert not [r for r in caplog.records if r.getMessage() == "hidden"]
