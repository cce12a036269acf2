"""The command lines: one module per script, and the only code that knows command-line flags.

Each ``main(argv)`` parses its flags, maps them onto the library's parameters,
runs the job and returns the exit code (:func:`~fer_keras.cli.common.run_cli`:
0 done, 2 a problem to fix, 130 interrupted).
"""
