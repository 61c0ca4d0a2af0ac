"""Scenario + plugins → Plan, collecting every problem before failing.

Each section is validated item by item, so a mistake in one target doesn't
hide a bad reference in a request; everything found is raised together as
one ScenarioError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, TypeAdapter, ValidationError

from llmscen.compile import paths, templates
from llmscen.compile.capture import CaptureSyntaxError, is_variable_name, parse_capture
from llmscen.compile.data import DataFileError, columns_of, detect_format, read_rows
from llmscen.compile.phases import derive_seed, expand, replayed
from llmscen.compile.plan import (
    BaselinePlan,
    DataPlan,
    FaultPlan,
    GoodputObjective,
    PhasePlan,
    Plan,
    RequestPlan,
    RunSettings,
    ServicePlan,
    SessionPlan,
    SLOPlan,
    StepPlan,
    SyntheticPlan,
    TargetPlan,
    TracePlan,
)
from llmscen.compile.slo import SLOSyntaxError, compile_slos, parse_slo, sweep_points
from llmscen.compile.tokenizer_file import TokenizerFileError, load_tokenizer
from llmscen.compile.trace import COLUMNS as TRACE_COLUMNS
from llmscen.compile.trace import read_trace
from llmscen.compile.urls import url_problem
from llmscen.spec.diagnostics import Diagnostic, ScenarioError, did_you_mean, one_of
from llmscen.spec.errors import diagnostics_from
from llmscen.spec.loader import Document, Loc
from llmscen.spec.metrics import resource_metric
from llmscen.spec.models import (
    REQUEST_COMMON_KEYS,
    STEP_COMMON_KEYS,
    TARGET_COMMON_KEYS,
    TRACE_FORMATS,
    BaselineSpec,
    DataSpec,
    FaultSpec,
    MetricsSpec,
    PhaseSpec,
    RequestSpec,
    RunSpec,
    Scenario,
    ServiceSpec,
    StepSpec,
    TargetSpec,
    TurnsSpec,
)
from llmscen.spec.secrets import secret_values

GOODPUT_METRICS = ("ttft", "ttft_sent", "tpot", "latency", "latency_sent")
SESSION_VARS = frozenset({"turn", "session_id"})   # what a session's templates may use too


def session_steps(call: StepPlan, turns: TurnsSpec) -> list[StepPlan]:
    """A session's steps: its one call as `turn1` .. `turnN`, the think between turns."""
    low, high = turns.think or (0.0, 0.0)
    return [call.model_copy(update={
        "name": f"turn{k}",
        "think_min": low if k < turns.count else call.think_min,
        "think_max": high if k < turns.count else call.think_max}) for k in
        range(1, turns.count + 1)]


class Catalog(Protocol):
    """What the compiler needs of a registry (engine.registry.Registry has it)."""

    @property
    def plugins(self) -> Mapping[str, Any]:
        """name → entry with `.obj` (a Plugin)"""

    @property
    def services(self) -> Mapping[str, Any]:
        """name → entry with `.obj` (a ServiceKind)"""

    @property
    def broken(self) -> Mapping[str, Any]:
        """name → a readable reason it cannot be used"""


def compile_document(doc: Document, catalog: Catalog,
                     target_urls: Mapping[str, str] | None = None,
                     problems: Sequence[Diagnostic] = ()) -> Plan:
    """Validate `doc` and build its Plan; `target_urls` are `--target NAME=URL` overrides.

    Raises one ScenarioError with every problem: the loader's, `problems` found before
    (e.g. in command-line arguments), and the compiler's own.
    """
    return _Compiler(doc, catalog, dict(target_urls or {}), problems).run()


class _Compiler:
    def __init__(self, doc: Document, catalog: Catalog, target_urls: dict[str, str],
                 problems: Sequence[Diagnostic]) -> None:
        self.doc = doc
        self.catalog = catalog
        self.target_urls = target_urls
        self.problems: list[Diagnostic] = [*doc.diagnostics(), *problems]
        self.env = templates.environment()
        self.fault_specs: dict[str, tuple[Loc, list[FaultSpec]]] = {}
        self.trace_times: dict[str, list[float]] = {}    # trace data → its arrivals' times
        self.replay_locs: dict[str, Loc] = {}             # replay phase → its `replay:` key
        self.replay_notes: list[str] = []

    # -- helpers ---------------------------------------------------------------------------
    def error(self, loc: Loc, message: str, *, key: bool = False, offset: int = 0) -> None:
        if self.doc.usable(loc):   # else the loader has said what is wrong there
            self.problems.append(self.doc.diagnostic(loc, message, key=key, offset=offset))

    def validate(self, model: Any, loc: Loc, value: Any, root: type[BaseModel]) -> Any:
        """Validate one node; record its problems and return None when it is invalid."""
        try:
            if isinstance(model, type) and issubclass(model, BaseModel):
                return model.model_validate(value)
            return TypeAdapter(model).validate_python(value)
        except ValidationError as exc:
            self.problems.extend(diagnostics_from(exc, self.doc, root, prefix=loc))
            return None

    def section(self, name: str, kind: type) -> Any:
        value = self.doc.data.get(name)
        return value if isinstance(value, kind) else kind()

    # -- the pass ----------------------------------------------------------------------------
    def run(self) -> Plan:
        data = self.doc.data
        try:
            Scenario.model_validate(data)
        except ValidationError as exc:
            # each SLO is checked by compile_slos (a `fit:` is not an `assert:` mapping)
            self.problems.extend(diagnostics_from(exc, self.doc, Scenario, inside=("slos",)))
        services = self.services()
        targets = self.targets(services)
        data_plans = self.data()
        phases = self.faults(self.phases(), services, targets)
        requests = self.requests(targets, data_plans, phases)
        before, after = self.once("before"), self.once("after")
        phases = self.with_setup(phases, before, after)
        self.unreachable(phases, requests)
        self.consistent(phases)
        self.sweep_values(phases, requests)
        self.replay_requests(phases, requests)
        slos = self.slos(phases, requests, targets)
        goodput = self.goodput()
        baseline = self.baseline()
        run = self.run_settings()
        if self.problems:
            raise ScenarioError(self.problems)
        name = data.get("name") or Path(self.doc.file).stem
        return Plan(name=name, description=str(data.get("description") or ""),
                    file=str(Path(self.doc.file).resolve()), seed=int(data.get("seed", 1)),
                    services=tuple(services.values()), targets=tuple(targets.values()),
                    data=tuple(data_plans.values()), phases=tuple(phases),
                    requests=tuple(requests), slos=tuple(slos), goodput=tuple(goodput),
                    run=run, before=tuple(before), after=tuple(after), baseline=baseline,
                    notes=tuple(self.notes(phases, requests)),
                    secrets=secret_values(data, self.target_urls, services, targets)
                    | self.doc.secrets)

    def services(self) -> dict[str, ServicePlan]:
        out: dict[str, ServicePlan] = {}
        for name, raw in self.section("services", dict).items():
            loc = ("services", name)
            spec = self.validate(ServiceSpec, loc, raw, ServiceSpec)
            if spec is None:
                continue
            kind = spec.builtin or "command"
            entry = self.catalog.services.get(kind)
            if entry is None:
                self.error((*loc, "builtin"), f"unknown service {kind!r}"
                           f"{did_you_mean(kind, self.catalog.services)} (available: "
                           f"{one_of(k for k in self.catalog.services if k != 'command')})")
                continue
            model = entry.obj.options
            fields = spec.options if spec.builtin else {
                k: v for k, v in raw.items() if k != "builtin"}
            options_loc = (*loc, "options") if spec.builtin else loc
            options = self.validate(model, options_loc, fields, model)
            if options is not None:
                options = self.resolve_paths(options, options_loc)
                out[name] = ServicePlan(name=name, kind=kind, options=options)
        return out

    def resolve_paths(self, value: Any, loc: Loc) -> Any:
        """Path options made absolute against the scenario's folder; missing ones reported."""
        resolved, problems = paths.resolve(value, self.doc.base_dir)
        for sub, message in problems:
            self.error((*loc, *sub), message)
        return resolved

    def targets(self, services: dict[str, ServicePlan]) -> dict[str, TargetPlan]:
        out: dict[str, TargetPlan] = {}
        declared_services = set(self.section("services", dict))
        for name, raw in self.section("targets", dict).items():
            loc = ("targets", name)
            spec = self.validate(TargetSpec, loc, raw, TargetSpec)
            if spec is None:
                continue
            plugin = self.plugin(spec.plugin, (*loc, "plugin"))
            if spec.service is not None and spec.service not in declared_services:
                self.error((*loc, "service"), f"unknown service {spec.service!r}"
                           f"{did_you_mean(spec.service, declared_services)} (declared: "
                           f"{one_of(declared_services)})")
            url = self.target_urls.get(name, spec.url if spec.url is not None
                                       else spec.base_url)
            service = None if name in self.target_urls else spec.service
            if url is not None and name not in self.target_urls:
                problem = url_problem(url)
                if problem is not None:
                    self.error((*loc, "url" if spec.url is not None else "base_url"), problem)
            if url is None and service is None:
                self.error(loc, f"target {name!r} needs `url:` or `service:` "
                                f"(or --target {name}=URL)", key=True)
            extras = {k: v for k, v in raw.items() if k not in TARGET_COMMON_KEYS}
            if plugin is None:
                self.unknown_keys(loc, extras, TARGET_COMMON_KEYS, "target_options")
                continue
            options = self.validate(plugin.target_options, loc, extras, plugin.target_options)
            if options is not None:
                options = self.resolve_paths(options, loc)
                out[name] = TargetPlan(name=name, plugin=spec.plugin, service=service,
                                       url=url, options=options)
        declared = self.section("targets", dict)
        for name, url in sorted(self.target_urls.items()):
            problem = url_problem(url) if name in declared else \
                f"no target named {name!r} in the scenario{did_you_mean(name, declared)}"
            if problem is not None:
                self.problems.append(Diagnostic(f"--target {name}", 1, 1, problem))
        return out

    def unknown_keys(self, loc: Loc, extras: dict[str, Any], common: frozenset[str],
                     model_attr: str) -> None:
        """Keys no installed plugin takes, when the plugin in use is not known."""
        known = set(common)
        for entry in self.catalog.plugins.values():
            fields = getattr(entry.obj, model_attr).model_fields
            known |= {f.alias or name for name, f in fields.items()}
        for key in extras:
            if key not in known:
                self.error((*loc, key), f"unknown key {key!r}{did_you_mean(key, known)}",
                           key=True)

    def plugin(self, name: str, loc: Loc) -> Any:
        entry = self.catalog.plugins.get(name)
        if entry is not None:
            return entry.obj
        if name in self.catalog.broken:
            self.error(loc, f"plugin {name!r} is installed but unusable: "
                            f"{self.catalog.broken[name]}")
        else:
            self.error(loc, f"unknown plugin {name!r}{did_you_mean(name, self.catalog.plugins)}"
                            f" (installed: {one_of(self.catalog.plugins)})")
        return None

    def data(self) -> dict[str, DataPlan]:
        out: dict[str, DataPlan] = {}
        for name, raw in self.section("data", dict).items():
            loc = ("data", name)
            spec = self.validate(DataSpec, loc, raw, DataSpec)
            if spec is None:
                continue
            if spec.synthetic is not None:
                plan = self.synthetic(name, spec, loc)
                if plan is not None:
                    out[name] = plan
                continue
            assert spec.file is not None
            path = (self.doc.base_dir / spec.file).resolve()
            try:
                fmt = detect_format(path, spec.format)
                rows = read_trace(path, fmt) if fmt in TRACE_FORMATS else read_rows(path, fmt)
            except DataFileError as exc:
                self.error((*loc, "file"), str(exc))
                continue
            if fmt in TRACE_FORMATS:
                plan = self.trace(name, spec, loc, fmt, rows)
                if plan is not None:
                    out[name] = plan.model_copy(update={"file": str(path)})
                continue
            out[name] = DataPlan(name=name, file=str(path), format=fmt,
                                 order=spec.order, columns=columns_of(rows), rows=len(rows))
        return out

    def counted_by(self, name: str, target: str | None, api: str | None, where: Loc,
                   unused: bool = False) -> tuple[str | None, str] | None:
        """Whose tokenizer counts made prompts (`target:`, else their requests' one target)
        and how they are sent (`api:`, else their requests' API). With `unused`, data no
        request takes needs no tokenizer (None)."""
        declared = set(self.section("targets", dict))
        if target is None:
            users = sorted({str(r["target"]) for r in self.section("requests", list)
                            if isinstance(r, dict) and r.get("data") == name
                            and isinstance(r.get("target"), str)})
            if not users and unused:
                return None, api or "chat"
            if len(users) != 1:
                self.error(where, f"data {name!r}: say whose tokenizer counts its prompts "
                                  "with `target:`" + (f" (its requests use {one_of(users)})"
                                                      if users else ""), key=True)
                return None
            target = users[0]
        elif target not in declared:
            self.error((*where, "target"), f"unknown target {target!r}"
                       f"{did_you_mean(target, declared)} (declared: {one_of(declared)})")
            return None
        if api is None:   # as its requests are sent: their `api`, else their target's
            raw_target = self.section("targets", dict).get(target)
            apis = {r.get("api") or (raw_target or {}).get("api") or "chat"
                    for r in self.section("requests", list)
                    if isinstance(r, dict) and r.get("data") == name}
            api = "completions" if apis == {"completions"} else "chat"
        return target, api

    def trace(self, name: str, spec: DataSpec, loc: Loc, fmt: str,
              rows: list[dict[str, Any]]) -> DataPlan | None:
        """A trace to replay: its arrivals read now, its prompts made at the start of the run."""
        # a trace no request takes is replayed for its times only
        counted = self.counted_by(name, spec.target, spec.api, loc, unused=True)
        if counted is None:
            return None
        kind, tokenizer_file = self.tokenizer_file(spec.tokenizer, (*loc, "tokenizer"))
        if kind is None:
            return None
        self.trace_times[name] = [r["timestamp"] for r in rows]
        plan = TracePlan(block_tokens=spec.block_tokens, tokenizer=kind,
                         tokenizer_file=tokenizer_file, target=counted[0],
                         api=counted[1], seed=int(self.doc.data.get("seed", 1)))
        return DataPlan(name=name, format=fmt, order=spec.order, columns=TRACE_COLUMNS,
                        rows=len(rows), trace=plan)

    def synthetic(self, name: str, spec: DataSpec, loc: Loc) -> DataPlan | None:
        """`synthetic:` data: checked now, made at the start of the run."""
        synth = spec.synthetic
        assert synth is not None
        where = (*loc, "synthetic")
        counted = self.counted_by(name, synth.target, synth.api, where)
        if counted is None:
            return None
        target, api = counted
        assert target is not None
        kind, tokenizer_file = self.tokenizer_file(synth.tokenizer, (*where, "tokenizer"))
        prefix = synth.prefix
        shortest = synth.input_tokens.value or synth.input_tokens.min or 1
        if prefix is not None and prefix.tokens >= shortest:
            self.error((*where, "prefix", "tokens"), f"a prefix of {prefix.tokens} tokens "
                       f"leaves no room in prompts of {shortest} tokens: the prefix must be "
                       "shorter than the shortest prompt")
            return None
        if kind is None:
            return None
        columns = ("prompt", "input_tokens", "output_tokens", "prefix")
        plan = SyntheticPlan(
            input_tokens=synth.input_tokens, output_tokens=synth.output_tokens,
            tokenizer=kind, tokenizer_file=tokenizer_file, api=api, target=target,
            prefix_tokens=prefix.tokens if prefix else 0,
            prefix_share=prefix.share if prefix else 0.0,
            prefix_count=prefix.count if prefix else 1,
            seed=synth.seed if synth.seed is not None else int(self.doc.data.get("seed", 1)))
        return DataPlan(name=name, order=spec.order, columns=columns, rows=synth.rows,
                        synthetic=plan)

    def tokenizer_file(self, value: str, loc: Loc) -> tuple[Literal["server", "words", "file"] |
                                                            None, str]:
        """`server`, `words`, or a tokenizer file: found, readable, and its package there."""
        if value in ("server", "words"):
            return ("server" if value == "server" else "words"), ""
        path = Path(paths.absolute(self.doc.base_dir, value))
        if not path.is_file():
            self.error(loc, f"tokenizer file {value!r} not found (relative to the scenario "
                            "file); `tokenizer:` is `server`, `words` or a tokenizer file "
                            "such as a Hugging Face tokenizer.json")
            return None, ""
        try:
            load_tokenizer(path)
        except TokenizerFileError as exc:
            self.error(loc, str(exc))
            return None, ""
        return "file", str(path)

    def phases(self) -> list[PhasePlan]:
        out: list[PhasePlan] = []
        seen: dict[str, int] = {}
        base_seed = self.doc.data.get("seed", 1)
        base_seed = base_seed if isinstance(base_seed, int) else 1
        for index, raw in enumerate(self.section("phases", list)):
            loc = ("phases", index)
            spec = self.validate(PhaseSpec, loc, raw, PhaseSpec)
            if spec is None:
                continue
            try:
                plans = expand(spec, index, base_seed)
            except ValueError as exc:
                self.error((*loc, "ramp_to"), str(exc))
                continue
            for plan in plans:
                if plan.name in seen:
                    self.error((*loc, "name") if spec.name else loc,
                               f"phase name {plan.name!r} is used twice (first by phase "
                               f"{seen[plan.name] + 1})", key=not spec.name)
                seen[plan.name] = index
                if spec.faults:
                    self.fault_specs[plan.name] = (loc, spec.faults)
                if spec.search is not None:
                    plan = self.search_objectives(plan, spec.search.objectives,
                                                  (*loc, "search", "objectives"))
                if plan.replay is not None:
                    plan = self.replay(plan, (*loc, "replay"))
                out.append(self.traffic(plan, loc))
        return out

    def replay(self, plan: PhasePlan, loc: Loc) -> PhasePlan:
        """A `replay:` phase takes its arrivals from a trace data set."""
        name = plan.replay
        assert name is not None
        declared = self.section("data", dict)
        if name in self.trace_times:
            self.replay_locs[plan.name] = loc
            return replayed(plan, self.trace_times[name])
        if name not in declared:
            self.error(loc, f"unknown data {name!r}{did_you_mean(name, declared)} "
                            f"(declared: {one_of(declared)})")
        elif not (isinstance(declared[name], dict) and
                  declared[name].get("format") in TRACE_FORMATS):
            self.error(loc, f"data {name!r} is not a trace: `replay:` needs data with "
                            "`format: mooncake` or `format: llmscen`")
        return plan   # else its trace could not be read, and that was said

    def replay_requests(self, phases: list[PhasePlan], requests: list[RequestPlan]) -> None:
        """Each arrival of a replay sends its trace row to the requests that take it: a note
        when none of its mix does (then only the times are replayed)."""
        once = {*self.once_names("before"), *self.once_names("after")}
        for phase in phases:
            if phase.replay is None or phase.name not in self.replay_locs or not requests:
                continue
            mix = [n for n, _ in phase.mix] if phase.mix is not None else \
                [r.name for r in requests if r.name not in once]
            if not any(r.data == phase.replay for r in requests if r.name in mix):
                self.replay_notes.append(
                    f"phase {phase.name!r} replays the times of data {phase.replay!r} only: "
                    f"no request of it takes its rows (prompt and output lengths); give the "
                    f"replayed request `data: {phase.replay}` to send them")

    def once_names(self, key: str) -> list[str]:
        raw = self.doc.data.get(key)
        return [str(n) for n in raw] if isinstance(raw, list) else []

    def faults(self, phases: list[PhasePlan], services: dict[str, ServicePlan],
               targets: dict[str, TargetPlan]) -> list[PhasePlan]:
        """What each phase's `faults:` do, checked against the services and targets."""
        out = []
        for phase in phases:
            loc, specs = self.fault_specs.get(phase.name, ((), []))
            plans = []
            for i, fault in enumerate(specs):
                where = (*loc, "faults", i)
                if fault.stop is not None:
                    hit = tuple(t.name for t in targets.values() if t.service == fault.stop)
                    if fault.stop not in services:
                        self.error((*where, "stop"), f"unknown service {fault.stop!r}"
                                   f"{did_you_mean(fault.stop, services)} (declared: "
                                   f"{one_of(services)})")
                        continue
                    if not hit:
                        self.error((*where, "stop"), f"service {fault.stop!r} is not started in "
                                   "this run (no target uses it, or --target replaced it)")
                        continue
                    plans.append(FaultPlan(at=fault.at, action="stop", subject=fault.stop,
                                           duration=fault.for_, targets=hit))
                else:
                    assert fault.unload is not None and fault.target is not None
                    target = targets.get(fault.target)
                    if target is None or target.plugin != "triton":
                        self.error((*where, "target"), f"`unload` needs a Triton target; "
                                   f"{fault.target!r} is "
                                   f"{'not a target' if target is None else target.plugin}")
                        continue
                    plans.append(FaultPlan(at=fault.at, action="unload", subject=fault.unload,
                                           target=fault.target, duration=fault.for_,
                                           targets=(fault.target,)))
            out.append(phase.model_copy(update={"faults": tuple(plans)}) if plans else phase)
        return out

    def once(self, key: str) -> list[str]:
        """The requests of `before:` or `after:`, checked."""
        raw = self.doc.data.get(key)
        if not isinstance(raw, list):
            return []
        declared = self.request_names()
        out = []
        for i, name in enumerate(raw):
            if name not in declared:
                self.error((key, i), f"unknown request {name!r}{did_you_mean(str(name), declared)}"
                                     f" (declared: {one_of(declared)})")
            else:
                out.append(str(name))
        return out

    def with_setup(self, phases: list[PhasePlan], before: list[str],
                   after: list[str]) -> list[PhasePlan]:
        """`before:` and `after:` become test-case phases of their own at either end."""
        base_seed = self.doc.data.get("seed", 1)
        base_seed = base_seed if isinstance(base_seed, int) else 1
        for role, names in (("before", before), ("after", after)):
            if names and any(p.name == role for p in phases):
                self.error((role,), f"a phase is named {role!r}, the name of the "
                                    f"`{role}:` flows' own phase: rename it", key=True)
        setup = [PhasePlan(name=role, kind="each", cases=tuple(names), role=role,
                           seed=derive_seed(base_seed, role), expected_requests=len(names))
                 for role, names in (("before", before), ("after", after)) if names]
        head = [p for p in setup if p.role == "before"]
        tail = [p for p in setup if p.role == "after"]
        return [*head, *phases, *tail]

    def shared_captures(self) -> set[str]:
        """What `before:` flows capture: every request's templates may use it."""
        names = set(self.doc.data.get("before") or []) if isinstance(
            self.doc.data.get("before"), list) else set()
        out: set[str] = set()
        for raw in self.section("requests", list):
            if isinstance(raw, dict) and raw.get("name") in names:
                for step in raw.get("steps") or []:
                    if isinstance(step, dict) and isinstance(step.get("capture"), dict):
                        out |= set(step["capture"])
        return out

    def request_names(self) -> list[str]:
        return [str(r["name"]) for r in self.section("requests", list)
                if isinstance(r, dict) and r.get("name") is not None]

    def traffic(self, plan: PhasePlan, loc: Loc) -> PhasePlan:
        """Check the requests a phase names (`mix`, `each`); `each: all` becomes the list."""
        declared = self.request_names()
        if plan.kind == "each":
            cases = plan.cases or tuple(declared)
            for i, name in enumerate(plan.cases):
                if name not in declared:
                    self.error((*loc, "each", i), f"unknown request {name!r}"
                               f"{did_you_mean(name, declared)} (declared: {one_of(declared)})")
            return plan.model_copy(update={"cases": cases,
                                           "expected_requests": len(cases) * plan.times})
        if plan.kind == "parallel":
            groups = tuple(self.traffic(g, (*loc, "groups", g.name.rsplit(".", 1)[-1]))
                           for g in plan.groups)
            return plan.model_copy(update={"groups": groups})
        for i, (name, _) in enumerate(plan.mix or ()):
            if name not in declared:
                self.error((*loc, "mix", i) if isinstance(self.doc.data, dict) else loc,
                           f"unknown request {name!r}{did_you_mean(name, declared)} "
                           f"(declared: {one_of(declared)})")
        return plan

    def consistent(self, phases: list[PhasePlan]) -> None:
        """`expect: consistent` compares answers to identical requests: its reference must be
        a phase that runs, and a body that samples at a temperature above 0 differs by
        design."""
        names = {p.name for p in phases} | {g.name for p in phases for g in p.groups}
        for index, request in enumerate(self.section("requests", list)):
            if not isinstance(request, dict):
                continue
            steps = request.get("steps")
            places = [(("requests", index, "steps", i), step) for i, step in enumerate(steps)
                      if isinstance(step, dict)] if isinstance(steps, list) else \
                [(("requests", index), request)]
            for loc, raw in places:
                expect = raw.get("expect")
                spec = expect.get("consistent") if isinstance(expect, dict) else None
                if spec is None or spec is False:
                    continue
                reference = spec.get("reference") if isinstance(spec, dict) else None
                if isinstance(reference, str) and reference not in names:
                    self.error((*loc, "expect", "consistent", "reference"),
                               f"unknown phase {reference!r}{did_you_mean(reference, names)} "
                               f"(phases: {one_of(names)})")
                body = raw.get("body")
                heat = body.get("temperature") if isinstance(body, dict) else None
                if isinstance(heat, (int, float)) and not isinstance(heat, bool) and heat > 0:
                    self.error((*loc, "body", "temperature"),
                               f"`expect: consistent` compares the answers to identical "
                               f"requests, which differ by design at temperature {heat}: "
                               "send `temperature: 0` (and a `seed` where the server takes one)")
    def sweep_values(self, phases: list[PhasePlan], requests: list[RequestPlan]) -> None:
        """A template reading a sweep's parameter ({{ batch }}) is sent only by phases that
        set it: elsewhere the name is undefined and every call would fail."""
        swept = {k for p in phases for k in p.vars}
        flat = [g for p in phases for g in (p.groups or (p,))]
        for index, request in enumerate(requests):
            used = {name for step in request.steps for _, text in
                    templates.walk_strings(step.payload) if templates.is_template(text)
                    for name in templates.names_used(self.env, text)} & swept
            for phase in flat:
                sends = (phase.kind == "each" and request.name in phase.cases) or (
                    phase.kind in ("open", "closed", "search") and
                    (phase.mix is None or request.name in dict(phase.mix)))
                missing = sorted(used - set(phase.vars))
                if sends and missing:
                    self.error(("requests", index), (
                        f"request {request.name!r} reads {missing[0]!r}, which only the steps "
                        f"of a sweep over {missing[0]!r} set, but phase {phase.sweep or phase.name!r} sends "
                        f"it too: give that phase a `mix:` without {request.name!r}"))
                    break

    def unreachable(self, phases: list[PhasePlan], requests: list[RequestPlan]) -> None:
        """A request no phase can send is a mistake, not a test that silently never runs."""
        sendable: set[str] = set()
        everything = False
        for key in ("before", "after"):
            if isinstance(self.doc.data.get(key), list):
                sendable |= {str(n) for n in self.doc.data[key]}
        for phase in [*phases, *(g for p in phases for g in p.groups)]:
            if phase.kind == "each":
                sendable |= set(phase.cases)
            elif phase.kind in ("open", "closed", "search"):
                if phase.mix is None:
                    everything = True
                else:
                    sendable |= {name for name, _ in phase.mix}
        if everything:
            return
        for index, request in enumerate(self.section("requests", list)):
            name = request.get("name") if isinstance(request, dict) else None
            if isinstance(name, str) and name not in sendable and \
                    any(r.name == name for r in requests):
                self.error(("requests", index, "name"), f"no phase sends request {name!r}: "
                           "name it in a phase's `mix:` or `each:`, or give a phase no `mix`")

    def requests(self, targets: dict[str, TargetPlan], data: dict[str, DataPlan],
                 phases: list[PhasePlan]) -> list[RequestPlan]:
        out: list[RequestPlan] = []
        declared_targets = set(self.section("targets", dict))
        declared_data = set(self.section("data", dict))
        names: set[str] = set()
        for index, raw in enumerate(self.section("requests", list)):
            loc = ("requests", index)
            spec = self.validate(RequestSpec, loc, raw, RequestSpec)
            if spec is None:
                self.request_extras(raw, loc, targets)
                continue
            if spec.name in names:
                self.error((*loc, "name"), f"request name {spec.name!r} is used twice")
            names.add(spec.name)
            if spec.target not in declared_targets:
                self.error((*loc, "target"), f"unknown target {spec.target!r}"
                           f"{did_you_mean(spec.target, declared_targets)} (declared: "
                           f"{one_of(declared_targets)})")
            if spec.data is not None and spec.data not in declared_data:
                self.error((*loc, "data"), f"unknown data {spec.data!r}"
                           f"{did_you_mean(spec.data, declared_data)} (declared: "
                           f"{one_of(declared_data)})")
            target = targets.get(spec.target)
            plugin = self.plugin_of(spec.target)
            columns = data[spec.data].columns if spec.data in data else None
            if spec.steps is None and "body" not in raw and target is not None:
                raw = self.synthetic_payload(raw, data.get(spec.data or ""), plugin, target)
            turns = spec.turns
            swept = frozenset(k for p in phases for k in p.vars)
            steps = self.steps(spec, raw, loc, plugin, columns,
                               (SESSION_VARS if turns is not None else frozenset()) | swept)
            session = None
            if turns is not None and steps is not None and target is not None:
                session = self.session(spec, turns, raw, loc, plugin, target)
                steps = session_steps(steps[0], turns) if session is not None else None
            if steps is not None and target is not None:
                out.append(RequestPlan(name=spec.name, target=spec.target, weight=spec.weight,
                                       data=spec.data, stream=spec.stream, timeout=spec.timeout,
                                       steps=tuple(steps),
                                       expect=steps[0].expect if spec.steps is None
                                       else spec.expect, session=session))
        return out

    def synthetic_payload(self, raw: dict[str, Any], data: DataPlan | None, plugin: Any,
                          target: TargetPlan) -> dict[str, Any]:
        """A request on `synthetic:` data without a body of its own sends the row as its
        plugin says (engine.protocol.Synthesizing): prompt and output length."""
        fill = getattr(plugin, "synthetic_payload", None)
        if data is None or (data.synthetic is None and data.trace is None) or fill is None:
            return raw
        extras = {k: v for k, v in raw.items() if k not in REQUEST_COMMON_KEYS}
        try:
            options = plugin.request_options.model_validate(extras)
        except ValidationError:
            return raw            # reported where the request's keys are checked
        output = data.trace is not None or (data.synthetic is not None and
                                            data.synthetic.output_tokens is not None)
        return {**raw, **fill(target.options, options, output)}

    def session(self, spec: RequestSpec, turns: TurnsSpec, raw: dict[str, Any], loc: Loc,
                plugin: Any, target: TargetPlan) -> SessionPlan | None:
        """`turns:`: one call made a session, if its plugin and options can hold one."""
        where = (*loc, "turns")
        if spec.steps is not None:
            self.error(where, "a session repeats one call, its history carried along: give "
                              "`turns:` or `steps:`, not both", key=True)
            return None
        if turns.rows == "turn" and spec.data is None:
            self.error((*where, "rows") if isinstance(raw.get("turns"), dict) else where,
                       "`rows: turn` takes a new data row each turn: the request needs `data:`")
            return None
        # plugins that hold sessions say so (engine.protocol.Conversing)
        problem_of = getattr(plugin, "session_problem", None)
        if problem_of is None:
            self.error(where, f"plugin {target.plugin!r} cannot hold a multi-turn session "
                              "(`turns:` needs a plugin that carries chat history, e.g. openai, "
                              "vllm)", key=True)
            return None
        extras = {k: v for k, v in raw.items() if k not in REQUEST_COMMON_KEYS}
        problem = problem_of(target.options, plugin.request_options.model_validate(extras))
        if problem is not None:
            self.error(where, f"request {spec.name!r}: {problem}", key=True)
            return None
        return SessionPlan(turns=turns.count, rows=turns.rows, header=turns.header)

    def request_extras(self, raw: Any, loc: Loc, targets: dict[str, TargetPlan]) -> None:
        """Check a broken request's plugin keys too, so one pass reports them all."""
        if not isinstance(raw, dict) or "steps" in raw:
            return
        plugin = self.plugin_of(raw.get("target"))
        extras = {k: v for k, v in raw.items() if k not in REQUEST_COMMON_KEYS}
        if plugin is None:
            self.unknown_keys(loc, extras, REQUEST_COMMON_KEYS, "request_options")
        else:
            self.validate(plugin.request_options, loc, extras, plugin.request_options)

    def plugin_of(self, target: Any) -> Any:
        """The plugin a target names, read from the raw target even if it is invalid."""
        raw = self.section("targets", dict).get(target) if isinstance(target, str) else None
        name = raw.get("plugin") if isinstance(raw, dict) else None
        entry = self.catalog.plugins.get(name) if isinstance(name, str) else None
        return entry.obj if entry is not None else None

    def steps(self, spec: RequestSpec, raw: dict[str, Any], loc: Loc, plugin: Any,
              columns: tuple[str, ...] | None,
              variables: frozenset[str] = frozenset()) -> list[StepPlan] | None:
        """A single call is a flow of one step; each step's plugin keys are checked."""
        extras = {k: v for k, v in raw.items() if k not in REQUEST_COMMON_KEYS}
        if spec.steps is None:
            raw_steps: list[tuple[Loc, dict[str, Any], StepSpec | None]] = [
                (loc, extras, StepSpec(name=spec.name, expect=spec.expect,
                                       record=spec.record))]
        else:
            if spec.expect is not None:
                self.error((*loc, "expect"), "with `steps:`, `expect:` goes inside the step it "
                                             "checks", key=True)
            if spec.record:
                self.error((*loc, "record"), "with `steps:`, `record:` goes inside the step "
                                             "whose response it reads", key=True)
            if extras:
                key = sorted(extras)[0]
                self.error((*loc, key), f"{key!r} belongs inside a step when the request has "
                                        "`steps:`", key=True)
            raw_steps = [((*loc, "steps", i), {k: v for k, v in step.items()
                                               if k not in STEP_COMMON_KEYS},
                          spec.steps[i]) for i, step in enumerate(raw["steps"])]
        plans: list[StepPlan] = []
        captured: set[str] = self.shared_captures() | variables
        ok = plugin is not None
        common = STEP_COMMON_KEYS if spec.steps is not None else REQUEST_COMMON_KEYS
        for i, (step_loc, payload, step) in enumerate(raw_steps):
            assert step is not None
            if spec.steps is not None and self.think_only(step, payload):
                if not plans:
                    self.error((*step_loc, "think"), "a flow cannot start with a think; put the "
                                                    "pause in the phase (`think:` of a closed "
                                                    "phase) or after a step", key=True)
                else:   # Artillery's `- think: 2`: a pause after the step before it
                    low, high = step.think or (0.0, 0.0)
                    last = plans[-1]
                    plans[-1] = last.model_copy(update={"think_min": last.think_min + low,
                                                        "think_max": last.think_max + high})
                continue
            if plugin is not None:
                model = plugin.request_options
                if self.validate(model, step_loc, payload, model) is None:
                    ok = False
            else:
                self.unknown_keys(step_loc, payload, common, "request_options")
            # data declared but unreadable (said already): `row` and any column go
            known = captured | {"row"} if spec.data and columns is None else captured
            for sub, text in templates.walk_strings(payload):
                if templates.is_template(text):
                    for message in templates.check(self.env, text, known, columns):
                        self.error((*step_loc, *sub), message)
            if step.if_ is not None:
                for message in templates.check_condition(self.env, step.if_, known, columns):
                    self.error((*step_loc, "if"), message)
            self.captures(step_loc, step.capture)
            self.records(step_loc, step.record)
            captured |= set(step.capture)
            think = step.think or (0.0, 0.0)
            expect = self.resolve_paths(step.expect, (*step_loc, "expect"))
            plans.append(StepPlan(name=step.name or f"step{i + 1}", payload=payload,
                                  condition=step.if_, capture=step.capture,
                                  record=step.record,
                                  think_min=think[0], think_max=think[1], expect=expect))
        return plans if ok else None

    @staticmethod
    def think_only(step: StepSpec, payload: dict[str, Any]) -> bool:
        """A step that only pauses: `- think: 2s` (Artillery writes pauses this way)."""
        return step.think is not None and not payload and step.name is None and \
            step.if_ is None and not step.capture and step.expect is None and not step.record

    def notes(self, phases: list[PhasePlan], requests: list[RequestPlan]) -> list[str]:
        """What runs differently from how it reads."""
        flat = [g for p in phases for g in (p.groups or (p,))]
        out = []
        for r in requests:
            scheduled = [p.name for p in flat if (p.kind == "open" and (
                p.mix is None or r.name in dict(p.mix))) or (p.kind == "each" and (
                    not p.cases or r.name in p.cases))]
            if r.steps[-1].think_max > 0 and scheduled:
                out.append(f"request {r.name!r}: the think after its last step waits before "
                           "the user's next iteration in closed phases; open and test-case "
                           f"phases ({', '.join(scheduled)}) ignore it, since they decide "
                           "when requests start")
        return [*out, *self.replay_notes]

    def captures(self, loc: Loc, capture: dict[str, str]) -> None:
        for var, expr in capture.items():
            where = (*loc, "capture", var)
            if not is_variable_name(var):
                self.error(where, f"capture name {var!r} cannot be used in a template: use "
                                  "letters, digits and '_', not starting with a digit", key=True)
            try:
                parse_capture(expr)
            except CaptureSyntaxError as exc:
                self.error(where, exc.message, offset=exc.column)

    def records(self, loc: Loc, record: dict[str, str]) -> None:
        """Custom metrics: plain names (the SLO reads `custom.NAME`), capture expressions."""
        for name, expr in record.items():
            where = (*loc, "record", name)
            if not is_variable_name(name):
                self.error(where, f"custom metric name {name!r}: use letters, digits and '_', "
                                  "not starting with a digit (SLOs read it as custom.NAME)",
                           key=True)
            try:
                parse_capture(expr)
            except CaptureSyntaxError as exc:
                self.error(where, exc.message, offset=exc.column)

    def slos(self, phases: list[PhasePlan], requests: list[RequestPlan],
             targets: dict[str, TargetPlan]) -> list[SLOPlan]:
        # names as written, so a broken phase doesn't also make its SLOs "unknown"
        raw_phases = [p for p in self.section("phases", list) if isinstance(p, dict)]
        phase_names = {p.name for p in phases} | {p.sweep for p in phases if p.sweep} | {
            g.name for p in phases for g in p.groups} | {
            str(p["name"]) for p in raw_phases if p.get("name") is not None}
        request_names = {r.name for r in requests} | {
            str(r["name"]) for r in self.section("requests", list)
            if isinstance(r, dict) and r.get("name") is not None}
        for r in requests:
            if len(r.steps) > 1:
                request_names |= {f"{r.name}.{step.name}" for step in r.steps}
        scopes = {"phase": phase_names, "request": request_names,
                  "target": set(self.section("targets", dict))}
        custom = {f"custom.{name}" for r in requests for s in r.steps for name in s.record}
        started = {t.service for t in targets.values() if t.service} | {
            str(t["service"]) for t in self.section("targets", dict).values()
            if isinstance(t, dict) and isinstance(t.get("service"), str)}
        plans, problems = compile_slos(self.doc, scopes, custom=custom, services=started,
                                       sweeps=sweep_points(phases))
        self.problems += problems
        return plans

    def search_objectives(self, plan: PhasePlan, raw: list[Any], loc: Loc) -> PhasePlan:
        """A search's objectives: SLOs judged on each step (a request or target scope only)."""
        declared_requests = set(self.request_names())
        declared_targets = set(self.section("targets", dict))
        out = []
        for i, item in enumerate(raw):
            where: Loc = (*loc, i)
            text = item if isinstance(item, str) else item.assert_
            text_loc = where if isinstance(item, str) else (*where, "assert")
            try:
                expr = parse_slo(text)
            except SLOSyntaxError as exc:
                self.error(text_loc, str(exc), offset=exc.column)
                continue
            if expr.metric == "capacity":
                self.error(text_loc, "`capacity` is what the search finds: assert it in `slos:`")
                continue
            if resource_metric(expr.metric) is not None:
                self.error(text_loc, f"{expr.metric} is sampled, not measured per request: "
                                     "assert it in `slos:` (with `phase:`), not as an objective")
                continue
            scope: dict[str, Any] = {}
            if not isinstance(item, str):
                for key in ("phase", "window"):
                    if getattr(item, key) is not None:
                        self.error((*where, key), f"an objective is judged on each step; it "
                                                  f"takes no `{key}`", key=True)
                for key, known in (("request", declared_requests), ("target", declared_targets)):
                    value = getattr(item, key)
                    if value is not None and value not in known:
                        self.error((*where, key), f"unknown {key} {value!r}"
                                   f"{did_you_mean(value, known)} (known: {one_of(known)})")
                    scope[key] = value
            at = self.doc.diagnostic(text_loc, "")
            out.append(SLOPlan(text=text, metric=expr.metric, stat=expr.stat, op=expr.op,
                               threshold=expr.threshold, where=f"{at.file}:{at.line}:{at.col}",
                               **scope))
        assert plan.search is not None
        return plan.model_copy(update={"search": plan.search.model_copy(
            update={"objectives": tuple(out)})})

    def baseline(self) -> BaselinePlan | None:
        """The earlier run to compare with (a results file; `run` reads it before traffic)."""
        raw = self.doc.data.get("baseline")
        if raw is None:
            return None
        spec = self.validate(BaselineSpec, ("baseline",), raw, BaselineSpec)
        if spec is None:
            return None
        path = (self.doc.base_dir / spec.file).resolve()
        if not path.is_file():   # its contents are checked when the run starts
            self.error(("baseline", "file"), f"no results file at {spec.file} "
                                             f"({path.parent} has no {path.name})")
            return None
        return BaselinePlan(file=str(path), max_regression=spec.max_regression, alpha=spec.alpha)

    def run_settings(self) -> RunSettings:
        spec = self.validate(RunSpec, ("run",), self.doc.data.get("run") or {}, RunSpec)
        metrics = self.validate(MetricsSpec, ("metrics",), self.doc.data.get("metrics") or {},
                                MetricsSpec)
        return RunSettings(connect_failures=spec.connect_failures if spec else 20,
                           on_worker_lost=spec.on_worker_lost if spec else "continue",
                           large_chunk=metrics.large_chunk if metrics else 20,
                           server_interval=metrics.server_interval if metrics else 1.0)

    def goodput(self) -> list[GoodputObjective]:
        raw = self.doc.data.get("goodput")
        if not isinstance(raw, dict):
            return []
        for metric in raw:
            if metric not in GOODPUT_METRICS:
                self.error(("goodput", metric), f"goodput objectives take per-request "
                           f"durations; {metric!r} is not one{did_you_mean(metric, GOODPUT_METRICS)}"
                           f" (choose from {', '.join(GOODPUT_METRICS)})", key=True)
        values = self.validate(Scenario.model_fields["goodput"].annotation, ("goodput",), raw,
                               Scenario)
        return [GoodputObjective(metric=m, threshold=v) for m, v in (values or {}).items()
                if m in GOODPUT_METRICS]
