"""`import pynvml` for a real daemon in a benchmark: with this directory first on PYTHONPATH,
`llm-agent run` reads 8 fake GPUs (tests/support/fake_pynvml.py, shaped after nvidia-ml-py and
built on its constants and errors) through its own NVML collector, as it would read a GPU box."""

import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]  # the real module is found next
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))  # the repository
del sys.modules[__name__]
importlib.import_module("pynvml")  # nvidia-ml-py itself: fake_pynvml takes its constants and errors from it

from tests.bench.agent_process import eight_gpus  # noqa: E402
from tests.support.fake_pynvml import FakeNvml  # noqa: E402

sys.modules[__name__] = FakeNvml(eight_gpus())  # what `import pynvml` returns from now on
