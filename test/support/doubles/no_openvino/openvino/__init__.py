"""
Test double: a machine without openvino.

With this directory first on PYTHONPATH, `import openvino` fails exactly as it does where the
package is not installed (the real openvino is never loaded). Used by test_openvino_backend.py
for the "openvino absent" cases.
"""
raise ModuleNotFoundError(
    "No module named 'openvino' (hidden by test/support/doubles/no_openvino)", name='openvino')
