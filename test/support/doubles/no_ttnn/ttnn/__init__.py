"""
Test double: a machine without ttnn.

With this directory first on PYTHONPATH, `import ttnn` fails exactly as it does where the package
is not installed (the real ttnn is never loaded). Used by test_node_params.py for the "ttnn
absent" start-up case.
"""
raise ModuleNotFoundError("No module named 'ttnn' (hidden by test/support/doubles/no_ttnn)",
                          name='ttnn')
