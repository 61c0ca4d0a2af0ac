"""The human view of a Plan for `llmscen plan`."""

from __future__ import annotations

from llmscen.compile.plan import PhasePlan, Plan
from llmscen.engine.load import DEFAULT_MAX_IN_FLIGHT
from llmscen.spec.units import format_duration


def _load(phase: PhasePlan) -> str:
    mix = ""
    if phase.mix is not None:
        mix = " · " + ", ".join(f"{name} ×{weight:g}" if weight != 1 else name
                                for name, weight in phase.mix)
    return _model(phase) + mix


def _model(phase: PhasePlan) -> str:
    if phase.search is not None:
        spec = phase.search
        unit = "/s" if spec.axis == "arrival_rate" else " users"
        goals = ", ".join(o.text for o in spec.objectives)
        return (f"search {spec.low:g}..{spec.high:g}{unit} ±{spec.precision:.0%}, "
                f"≤{spec.max_steps} steps of {format_duration(spec.step)}: {goals}")
    if phase.kind == "each":
        order = "all at once" if phase.concurrent else "in order"
        return f"each of {', '.join(phase.cases)} ×{phase.times}, {order}"
    if phase.kind == "parallel":
        return " | ".join(f"{g.name.rsplit('.', 1)[-1]}: {_load(g)}" for g in phase.groups)
    if phase.kind == "open" and phase.replay is not None:
        cap = _in_flight(phase)
        mean = f", mean {phase.rate:.3g}/s" if phase.rate else ""
        return f"replay {phase.replay} ×{phase.speed:g}{mean}{cap}"
    if phase.kind == "open":
        rate = f"{phase.rate:g}/s"
        if phase.ramp_to is not None:
            rate += f" → {phase.ramp_to:g}/s"
        extra = f" {phase.arrival}" + (f"(shape {phase.burstiness:g})"
                                       if phase.arrival == "gamma" else "")
        cap = _in_flight(phase)
        return rate + extra + cap
    if phase.kind == "closed":
        users = f"{phase.users} user" + ("s" if phase.users != 1 else "")
        if phase.users_ramp_to is not None:
            users += f" → {phase.users_ramp_to}"
        if phase.spawn_rate:
            users += f", spawn {phase.spawn_rate:g}/s"
        if phase.think_max:
            low, high = format_duration(phase.think_min), format_duration(phase.think_max)
            users += f", think {low}" + (f"..{high}" if high != low else "")
        return users
    return "pause"


def _in_flight(phase: PhasePlan) -> str:
    # the default bound is shown too: it decides what a run past capacity measures
    if phase.max_in_flight:
        return f", ≤{phase.max_in_flight:,} in flight"
    return f", ≤{DEFAULT_MAX_IN_FLIGHT:,} in flight (default)"


def render_plan(plan: Plan) -> str:
    lines = [f"scenario {plan.name}  ({plan.file})"]
    if plan.description:
        lines.append(f"  {plan.description}")
    lines.append(f"seed {plan.seed}")
    lines.append("")
    lines.append("targets:")
    for t in plan.targets:
        where = t.url or f"service {t.service}"
        model = getattr(t.options, "model", None)
        lines.append(f"  {t.name:<16} {t.plugin:<8} {where}" + (f"  model {model}" if model
                                                                  else ""))
    if plan.services:
        lines.append("services:")
        for s in plan.services:
            cwd = getattr(s.options, "cwd", None)
            lines.append(f"  {s.name:<16} {s.kind}" + (f"  in {cwd}" if cwd else ""))
    if plan.data:
        lines.append("data:")
        for d in plan.data:
            synth = d.synthetic
            source = d.file if synth is None else "synthetic, counted by " + (
                f"server of target {synth.target}" if synth.tokenizer == "server" else
                f"tokenizer file {synth.tokenizer_file}" if synth.tokenizer == "file" else
                synth.tokenizer)
            lines.append(f"  {d.name:<16} {source}  ({d.rows} rows, {d.order})")
    lines.append("")
    header = f"  {'phase':<20} {'model':<7} {'duration':>9} {'load':<40} {'expected':>9}"
    lines += ["phases:", header, "  " + "-" * (len(header) - 2)]
    total = 0
    unknown = False
    for p in plan.phases:
        duration = format_duration(p.duration) if p.duration is not None else "-"
        if p.max_requests:
            duration += f" / {p.max_requests} req"
        expected = "-" if p.kind == "pause" else (
            str(p.expected_requests) if p.expected_requests is not None else "by latency")
        if p.expected_requests is not None:
            total += p.expected_requests
        elif p.kind != "pause":
            unknown = True
        flags = " (warmup)" if p.warmup else ""
        lines.append(f"  {p.name + flags:<20} {p.kind:<7} {duration:>9} {_load(p):<40} "
                     f"{expected:>9}")
    lines.append(f"  total expected requests: {total}" + (" + closed-model phases (paced by "
                                                         "latency)" if unknown else ""))
    lines.append("")
    weights = sum(r.weight for r in plan.requests)
    lines.append("requests (mix):")
    for r in plan.requests:
        share = 100 * r.weight / weights
        kind = f"{len(r.steps)} steps" if len(r.steps) > 1 else ("stream" if r.stream else "call")
        if r.session is not None:
            kind = f"{r.session.turns}-turn session"
        data = f", data {r.data}" if r.data else ""
        lines.append(f"  {r.name:<20} {share:5.1f}%  → {r.target} ({kind}{data})")
    if plan.slos:
        lines.append("")
        lines.append("SLOs:")
        for slo in plan.slos:
            scope = ", ".join(f"{k} {v}" for k, v in (("phase", slo.phase),
                                                        ("request", slo.request),
                                                        ("target", slo.target)) if v)
            if slo.window:
                scope += (", " if scope else "") + f"every {format_duration(slo.window)} window"
            lines.append(f"  {slo.text}" + (f"  [{scope}]" if scope else ""))
    if plan.goodput:
        lines.append("goodput objectives: " + ", ".join(
            f"{g.metric} ≤ {format_duration(g.threshold)}" for g in plan.goodput))
    if plan.notes:
        lines.append("")
        lines += [f"note: {note}" for note in plan.notes]
    return "\n".join(lines)
