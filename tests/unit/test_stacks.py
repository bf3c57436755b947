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


def test_a_busy_thread_comes_first_and_empty_dump():
    busy = DUMP + 'Thread 4260 (active): "tokenizer"\n    encode (tok.py:9)\n    handle (server.py:20)\n'
    assert summarize(busy).startswith("tokenizer (active): encode (tok.py:9)")
    assert summarize("") == "no Python frames found"


# what py-spy said of tests/support/stuck_server.py once: the accept loop caught "active" in select
STUCK = """Thread 100 (active): "Thread-1 (serve_forever)"
    _PollLikeSelector.select (selectors.py:415)
    BaseServer.serve_forever (socketserver.py:233)
    Thread.run (threading.py:975)
Thread 101 (idle): "Thread-2 (process_request_thread)"
    stuck_in_decode (stuck_server.py:21)
    Handler.do_POST (stuck_server.py:40)
    BaseHTTPRequestHandler.handle_one_request (server.py:424)
"""


def test_an_accept_loop_caught_active_does_not_hide_the_stuck_request():
    assert summarize(STUCK).startswith("Thread-2 (process_request_thread) (idle): stuck_in_decode")


# what py-spy said of tests/support/stuck_server.py in a CI run: a thread caught writing a /metrics reply
WRITING = """Thread 102 (active): "Thread-3 (process_request_thread)"
    _SocketWriter.write (socketserver.py:834)
    Handler._send (stuck_server.py:35)
    Handler.do_GET (stuck_server.py:45)
Thread 101 (idle): "Thread-2 (process_request_thread)"
    stuck_in_decode (stuck_server.py:21)
    Handler.do_POST (stuck_server.py:60)
    BaseHTTPRequestHandler.handle_one_request (server.py:420)
"""


def test_a_thread_caught_writing_a_reply_does_not_hide_the_stuck_request():
    assert summarize(WRITING).startswith("Thread-2 (process_request_thread) (idle): stuck_in_decode")
