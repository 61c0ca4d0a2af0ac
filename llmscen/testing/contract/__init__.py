"""The plugin contract (plugin API v1) as a test suite a plugin author runs.

Subclass `RunnerContract` in a test module and give it the plugin, a server
and three calls; every `test_*` method then checks one rule of
docs/plugins.md ("Contract rules") against your plugin:

    import pytest
    from llmscen.engine.protocol import Call
    from llmscen.testing.contract import RunnerContract

    class TestMyPluginContract(RunnerContract):
        @pytest.fixture
        def plugin(self):
            return my_plugin.plugin

        @pytest.fixture
        def target_url(self):            # a server that answers the calls below
            with serve_my_fake() as url:
                yield url

        def target_options(self, secret):
            return {"model": "m", "api_key": secret}

        def good_call(self):
            return Call("chat", {"body": {"messages": [...]}})

        def streaming_call(self):        # None when the plugin does not stream
            return Call("chat", {"body": {"messages": [...]}}, stream=True)

        def failing_call(self):          # the server answers it with an HTTP error status
            return Call("chat", {"body": {"fail": 500}})

`plugin` and `target_url` are plain pytest fixtures, so they may also come
from a conftest.py. The failure paths (timeouts, refused and closed
connections, malformed answers, echoed secrets) use servers of the suite's
own (hostile.py), so your server only has to answer the three calls. Each
test runs its own event loop; run your server in a thread
(`llmscen.testing.background.serve_in_thread`) or a process.

To opt out of a rule that cannot apply, override its test with one that calls
`pytest.skip("why")`. Set `speaks_http = False` for a plugin whose protocol
has no HTTP status codes.
"""

from __future__ import annotations

from llmscen.testing.contract.suite import RunnerContract

__all__ = ["RunnerContract"]
