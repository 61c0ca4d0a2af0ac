"""Starting the services a plan's targets use, once per run, in the driver's process."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from llmscen.compile.plan import Plan
from llmscen.engine.protocol import Endpoint, service_urls_to_fill, target_protocol

log = logging.getLogger(__name__)


@dataclass
class Started:
    """The plan with every target's URL filled in, and how to tell a service has died."""

    plan: Plan
    watches: dict[str, Callable[[], str | None]] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def dead(self) -> str | None:
        """How the first service that stopped under the run ended, or None."""
        for check in self.watches.values():
            status = check()
            if status is not None:
                return status
        return None


@asynccontextmanager
async def start_services(plan: Plan, registry: Any, log_dir: str | None
                         ) -> AsyncIterator[Started]:
    """Start the services the targets use; stop them on exit. Raises `ServiceError`."""
    async with AsyncExitStack() as stack:
        endpoints: dict[str, Endpoint] = {}
        used = {t.service for t in plan.targets if t.service and not t.url}
        for service in plan.services:
            if service.name in used:
                kind = registry.services[service.kind].obj
                began = time.monotonic()
                log.info("starting service %r (%s)", service.name, service.kind)
                endpoints[service.name] = endpoint = await stack.enter_async_context(
                    kind.launch(service, log_dir))
                log.info("service %r ready at %s after %.1fs", service.name,
                         " ".join(endpoint.urls.values()) or endpoint.url,
                         time.monotonic() - began)
                stack.callback(log.info, "stopping service %r", service.name)
        targets = []
        for target in plan.targets:
            if target.url is None:
                assert target.service is not None, "the compiler requires url or service"
                endpoint = endpoints[target.service]
                # options like `metrics_url` left unset are filled from the service's URLs
                fill = service_urls_to_fill(target.options, endpoint.urls)
                target = target.model_copy(update={
                    "url": endpoint.url_for(target_protocol(target.options)),
                    "options": target.options.model_copy(update=fill)})
            targets.append(target)
        watches = {name: e.exited for name, e in endpoints.items() if e.exited is not None}
        yield Started(plan.model_copy(update={"targets": tuple(targets)}), watches, endpoints)
