"""Shared test settings: reproducible hypothesis runs.

Every run draws hypothesis examples from one seed, printed in pytest's header,
so a CI failure replays exactly: ``HYPOTHESIS_SEED=<seed> python -m pytest ...``
(or ``--hypothesis-seed <seed>``). ``HYPOTHESIS_SEED=random`` draws a new seed,
still printed, to explore beyond the fixed one.
"""

import os
import random

DEFAULT_HYPOTHESIS_SEED = 0


def _hypothesis_seed(config):
    given = config.getoption("--hypothesis-seed", default=None)
    if given is not None:
        return given
    wanted = os.environ.get("HYPOTHESIS_SEED", str(DEFAULT_HYPOTHESIS_SEED))
    return random.SystemRandom().randrange(2**32) if wanted == "random" else int(wanted)


def pytest_configure(config):
    from hypothesis import core

    config.hypothesis_seed = _hypothesis_seed(config)
    core.global_force_seed = config.hypothesis_seed  # what --hypothesis-seed sets


def pytest_report_header(config):
    return (f"hypothesis seed {config.hypothesis_seed} "
            "(replay: HYPOTHESIS_SEED=<seed>; explore: HYPOTHESIS_SEED=random)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # Also at the end: `pytest -q` (CI) shows no header.
    terminalreporter.write_line(pytest_report_header(config))
