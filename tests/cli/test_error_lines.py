"""The one ``error:`` line of a script: library errors name parameters, the line adds the flag."""

import argparse

from fer_keras.cli import train_cli
from fer_keras.cli.common import error_line
from fer_keras.errors import BadRowError, ConfigError, FerError

TIME_BUDGET = "time_budget must be >= 0 minutes. Received: time_budget=-1.0"


def _parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-budget", type=float)
    parser.add_argument("--model-option", "-o", dest="model_options")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--unsafe", action="store_true")
    return parser


def test_error_line_names_the_flag_of_the_parameter_to_blame():
    """Check that an error blaming a parameter the script has a flag for starts with that (long) flag."""
    exc = ConfigError(TIME_BUDGET, parameter="time_budget")
    assert error_line(exc, parser=_parser()) == f"error: --time-budget: {TIME_BUDGET}"
    exc = ConfigError("width must be positive", parameter="model_options")
    assert error_line(exc, parser=_parser()) == "error: --model-option: width must be positive"


def test_error_line_writes_a_switch_as_its_flag():
    """Check that the library's ``overwrite=True`` (or ``safe_mode=False``, which --unsafe sets) reads as the
    switch a command-line user types, and that a value the user chooses is left as it is."""
    exc = ConfigError("out already holds report.json; pass overwrite=True or choose another folder",
                      parameter="overwrite")
    assert error_line(exc, parser=_parser()) == \
        "error: --overwrite: out already holds report.json; pass --overwrite or choose another folder"
    exc = ConfigError("m.h5 holds a Lambda layer; load it with safe_mode=False if you trust it", parameter="safe_mode")
    assert error_line(exc, parser=_parser()).endswith("load it with --unsafe if you trust it")
    exc = ConfigError(TIME_BUDGET, parameter="time_budget")
    assert error_line(exc, parser=_parser()) == f"error: --time-budget: {TIME_BUDGET}"


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


def test_train_script_error_names_the_flag(tmp_path, capsys):
    """Check that train.py --time-budget -1 exits 2 with one line naming the flag, the parameter and the value."""
    code = train_cli.main(["--csv", str(tmp_path / "none.csv"), "--run-dir", str(tmp_path / "run"),
                           "--models-dir", str(tmp_path / "models"), "--time-budget", "-1", "--quiet"],
                          prog="train.py", choose_model=True)
    assert code == 2
    err = capsys.readouterr().err
    assert err == f"error: --time-budget: {TIME_BUDGET}\n"
    assert not (tmp_path / "run").exists()
