"""The one ``error:`` line of a script: library errors name parameters, the line adds the flag."""

import argparse

from fer_keras.cli.common import error_line
from fer_keras.errors import BadRowError, ConfigError, FerError

TIME_BUDGET = "time_budget must be >= 0 minutes. Received: time_budget=-1.0"


def _parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-budget", type=float)
    parser.add_argument("--model-option", "-o", dest="model_options")
    return parser


def test_error_line_names_the_flag_of_the_parameter_to_blame():
    """Check that an error blaming a parameter the script has a flag for starts with that (long) flag."""
    exc = ConfigError(TIME_BUDGET, parameter="time_budget")
    assert error_line(exc, parser=_parser()) == f"error: --time-budget: {TIME_BUDGET}"
    exc = ConfigError("width must be positive", parameter="model_options")
    assert error_line(exc, parser=_parser()) == "error: --model-option: width must be positive"


def test_error_line_is_the_message_where_no_flag_fits():
    """Check that an error blaming no parameter, or one the script has no flag for, is printed as it is."""
    assert error_line(FerError("disk on fire"), parser=_parser()) == "error: disk on fire"
    assert error_line(ConfigError("lr must be positive", parameter="lr"), parser=_parser()) == \
        "error: lr must be positive"
    assert error_line(ConfigError(TIME_BUDGET, parameter="time_budget")) == f"error: {TIME_BUDGET}"


def test_error_line_keeps_the_hint_of_the_error_class():
    """Check that a command's own hint for an error class still ends the line."""
    line = error_line(BadRowError("rows.csv:2: 3 columns"), parser=_parser(), hints={BadRowError: "pass --x"})
    assert line == "error: rows.csv:2: 3 columns (pass --x)"

