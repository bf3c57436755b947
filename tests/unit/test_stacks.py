"""py-spy output summaries (the text captured from `py-spy dump` of a real server)."""

from agent.probes.stacks import summarize

DUMP = """Process 4242: python -m vllm.entrypoints.openai.api_server
Python v3.11.7 (/usr/bin/python3.11)

Thread 4242 (idle): "MainThread"
    Condition.wait (threading.py:327)
    serve (server.py:88)
Thread 4250 (idle): "Thread-1 (serve_forever)"
    _PollLikeSelector.select (selectors.py:415)
    serve_forever (socketserver.py:233)
Thread 4251 (idle): "engine"
    stuck_in_decode (engine.py:12)
    step (engine.py:40)
    run (engine.py:77)
"""


def test_the_stuck_thread_comes_first():
    assert summarize(DUMP).startswith("engine (idle): stuck_in_decode (engine.py:12) <- step (engine.py:40) <- run (engine.py:77)")


def test_active_threads_first_and_empty_dump():
    active = DUMP.replace('Thread 4250 (idle)', 'Thread 4250 (active)')
    assert summarize(active).startswith("Thread-1 (serve_forever) (active): _PollLikeSelector.select")
    assert summarize("") == "no Python frames found"
