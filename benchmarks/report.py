"""Turn the cases' raw results into target rows, a Markdown table, a PNG plot, and the README block.

Targets (issue 5): 1,000 no-op plates in under 3x the floor; flat per-plate cost and memory as N grows (here: the
largest N within 1.5x of N=100); at least 10x the anchor's throughput; timer lateness p99 under 5 ms and no guest
tick over 16 ms; cancelling 1,000 plates under 1 s; parallel efficiency above 0.8 on 2 workers. Issue 13: the Dask
executor on a 2-worker cluster at least 0.85x the local executor's wells/s on the same plates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

FLAT_TOLERANCE = 1.5
README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
README_PLACEHOLDER = "<!-- bench-table -->"
"""Where the first run puts the block when README.md has no bench marks yet."""


def _row(case: str, figure: str, target: str, ratio: float | None, met: bool | None) -> dict[str, Any]:
    return {"case": case, "figure": figure, "target": target, "ratio": ratio, "met": met}


def _missing(case: str, target: str, why: str) -> dict[str, Any]:
    return _row(case, f"not measured: {why}", target, None, None)


def _error(result: dict[str, Any] | None) -> str | None:
    if result is None:
        return "not run"
    if "error" in result:
        return str(result["error"]).splitlines()[0][:120]
    return None


def _series(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    noop = data["cases"].get("noop") or {}
    return {int(n): r for n, r in (noop.get("series") or {}).items() if "error" not in r}


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target, each with the figure, the target, the ratio that decides it, and whether it is met."""
    cases = data["cases"]
    out: list[dict[str, Any]] = []
    floor = cases.get("floor")
    series = _series(data)

    # 1. overhead against the floor
    target = "< 3x floor"
    if _error(floor):
        out.append(_missing("overhead vs floor", target, f"floor: {_error(floor)}"))
    elif not series:
        out.append(_missing("overhead vs floor", target, f"noop: {_error(cases.get('noop'))}"))
    else:
        assert floor is not None
        n = 1000 if 1000 in series else max(series)
        r = series[n]
        floor_s = n * floor["floor_per_plate_us"] / 1e6
        ratio = r["wall_s"] / floor_s
        out.append(
            _row(
                f"overhead vs floor ({n:,} no-op plates, embedded server)",
                f"{r['wall_s'] * 1e3:,.0f} ms vs floor {floor_s * 1e3:,.1f} ms "
                f"({floor['messages_per_plate']} msgs/plate x {floor['rt_pipe_us'] / 2:.1f} us)",
                target,
                ratio,
                ratio < 3,
            )
        )
        if "floor_with_files_per_plate_us" in floor:
            files_s = n * floor["floor_with_files_per_plate_us"] / 1e6
            out.append(
                _row(
                    f"overhead vs floor + results files ({n:,} no-op plates, embedded server)",
                    f"{r['wall_s'] * 1e3:,.0f} ms vs {files_s * 1e3:,.0f} ms (messages + mkdir and 2 atomic writes "
                    f"per plate: {floor['files_per_plate_us']:,.0f} us on this disk)",
                    target,
                    r["wall_s"] / files_s,
                    r["wall_s"] / files_s < 3,
                )
            )
        process = (cases.get("noop") or {}).get("server_process") or {}
        if "wall_s" in process and process.get("plates") == n:
            out.append(
                _row(
                    f"overhead vs floor ({n:,} no-op plates, server in its own process)",
                    f"{process['wall_s'] * 1e3:,.0f} ms vs floor {floor_s * 1e3:,.1f} ms",
                    target,
                    process["wall_s"] / floor_s,
                    process["wall_s"] / floor_s < 3,
                )
            )

    # 2. scale: per-plate time and memory flat as N grows
    if len(series) >= 2:
        ref = 100 if 100 in series else min(series)
        top = max(series)
        t_ref, t_top = series[ref]["per_plate_us"], series[top]["per_plate_us"]
        ratio = t_top / t_ref
        out.append(
            _row(
                f"per-plate time flat to N={top:,}",
                f"{t_top:,.0f} us/plate at {top:,} vs {t_ref:,.0f} at {ref:,}",
                f"<= {FLAT_TOLERANCE}x of N={ref:,}",
                ratio,
                ratio <= FLAT_TOLERANCE,
            )
        )
        m_ref, m_top = series[ref].get("tracemalloc_per_plate_bytes"), series[top].get("tracemalloc_per_plate_bytes")
        if m_ref and m_top:
            ratio = m_top / m_ref
            out.append(
                _row(
                    f"per-plate client memory flat to N={top:,}",
                    f"{m_top / 1024:,.1f} KiB/plate at {top:,} vs {m_ref / 1024:,.1f} at {ref:,} (tracemalloc peak)",
                    f"<= {FLAT_TOLERANCE}x of N={ref:,}",
                    ratio,
                    ratio <= FLAT_TOLERANCE,
                )
            )
        else:
            out.append(_missing("per-plate client memory flat", f"<= {FLAT_TOLERANCE}x", "no tracemalloc figure"))
    else:
        out.append(_missing("per-plate time flat", f"<= {FLAT_TOLERANCE}x", "fewer than two plate counts"))

    # 3. against the anchor
    anchor = cases.get("anchor")
    if _error(anchor):
        out.append(_missing("throughput vs zmqruntime 0.6.5", ">= 10x", f"anchor: {_error(anchor)}"))
    elif not series:
        out.append(_missing("throughput vs zmqruntime 0.6.5", ">= 10x", "no noop series"))
    else:
        assert anchor is not None
        n = anchor["plates"] if anchor["plates"] in series else min(series, key=lambda k: abs(k - anchor["plates"]))
        ours = series[n]["plates_per_s"]
        ratio = ours / anchor["plates_per_s"]
        out.append(
            _row(
                "throughput vs zmqruntime 0.6.5",
                f"{ours:,.0f} plates/s ({n:,}) vs {anchor['plates_per_s']:,.1f} ({anchor['plates']:,})",
                ">= 10x",
                ratio,
                ratio >= 10,
            )
        )
        control = series[max(series)].get("control") or {}
        if control.get("seq_per_s"):
            ratio = control["seq_per_s"] / anchor["control_requests_per_s"]
            out.append(
                _row(
                    "control requests/s vs zmqruntime 0.6.5",
                    f"{control['seq_per_s']:,.0f}/s one at a time ({control['pipe_per_s']:,.0f}/s with "
                    f"{control['window']} in flight) vs {anchor['control_requests_per_s']:,.0f}/s",
                    ">= 10x",
                    ratio,
                    ratio >= 10,
                )
            )

    # 4. GUI responsiveness
    gui = cases.get("gui")
    if _error(gui):
        out.append(_missing("GUI timer lateness p99", "< 5 ms", f"gui: {_error(gui)}"))
        out.append(_missing("longest guest tick", "<= 16 ms", f"gui: {_error(gui)}"))
    else:
        assert gui is not None
        run, idle = gui["run"], gui["idle"]
        frozen = gui.get("gc_freeze_variant") or {}
        fix = (
            f"; with gc.freeze(): p99 {frozen['run']['p99_ms']:.2f}, longest tick {frozen['longest_tick_ms']:.1f} ms"
            if "run" in frozen
            else ""
        )
        apart = gui.get("server_process_variant") or {}
        if "run" in apart:
            fix += (
                f"; server in its own process: p99 {apart['run']['p99_ms']:.2f}, "
                f"longest tick {apart['longest_tick_ms']:.1f} ms"
            )
        out.append(
            _row(
                f"GUI 10 ms timer lateness p99 ({gui['plates']:,}-plate run)",
                f"p50 {run['p50_ms']:.2f} / p99 {run['p99_ms']:.2f} / max {run['max_ms']:.2f} ms "
                f"(idle Trio: p99 {idle['p99_ms']:.2f}, max {idle['max_ms']:.2f}{fix})",
                "< 5 ms",
                run["p99_ms"] / 5,
                run["p99_ms"] < 5,
            )
        )
        out.append(
            _row(
                "longest guest tick",
                f"{gui['longest_tick_ms']:.2f} ms"
                + (f" (CPU {gui['longest_tick_cpu_ms']:.1f} ms)" if "longest_tick_cpu_ms" in gui else "")
                + f"; p99 {gui['tick']['p99_ms']:.2f} ms of {gui['tick']['n']:,} ticks ({gui.get('host', '')})",
                "<= 16 ms",
                gui["longest_tick_ms"] / 16,
                gui["longest_tick_ms"] <= 16,
            )
        )
        scale = gui.get("scale_variant") or {}
        if "longest_tick_ms" in scale:
            inline = gui.get("scale_inline_variant") or {}
            before = (
                f"; server inside the GUI's Trio run instead: {inline['longest_tick_ms']:.0f} ms"
                if "longest_tick_ms" in inline
                else ""
            )
            out.append(
                _row(
                    f"longest guest tick, {scale['plates']:,} plates in the window",
                    f"{scale['longest_tick_ms']:.2f} ms (GUI-thread CPU in it "
                    f"{scale.get('longest_tick_cpu_ms', 0):.1f} ms; most CPU in one tick "
                    f"{scale.get('most_cpu_in_a_tick_ms', 0):.1f} ms); "
                    f"{scale.get('slow_ticks', 0)} ticks over 16 ms of {scale['tick']['n']:,} "
                    f"({scale.get('slow_ticks_by_cpu', 0)} by CPU){before}; "
                    f"adding the rows {scale.get('add_plates_ms', 0):.0f} ms",
                    "<= 16 ms",
                    scale["longest_tick_ms"] / 16,
                    scale["longest_tick_ms"] <= 16,
                )
            )
        elif scale:
            out.append(_missing(f"longest guest tick, {10000:,} plates", "<= 16 ms", f"gui: {_error(scale)}"))

    # 5. cancellation
    cancel = cases.get("cancel")
    if _error(cancel):
        out.append(_missing("cancel 1,000 plates", "< 1 s", f"cancel: {_error(cancel)}"))
    else:
        assert cancel is not None
        t = cancel["cancel_to_idle_s"]
        noop = cancel.get("noop_variant") or {}
        extra = f"; no-op plates: {noop['cancel_to_idle_s'] * 1e3:,.0f} ms" if "cancel_to_idle_s" in noop else ""
        out.append(
            _row(
                f"cancel {cancel['plates']:,} plates mid-run",
                f"{t * 1e3:,.0f} ms to all terminal + server idle "
                f"(terminal after {cancel['cancel_to_terminal_s'] * 1e3:,.0f} ms; {cancel.get('pipeline', '')} "
                f"pipeline, stopped with {cancel['running_at_stop']} running{extra})",
                "< 1 s",
                t / 1.0,
                t < 1.0,
            )
        )

    # 6. real work
    real = cases.get("realwork")
    if _error(real):
        out.append(_missing("parallel efficiency", "> 0.8", f"realwork: {_error(real)}"))
    else:
        assert real is not None
        eff = real["efficiency"]
        out.append(
            _row(
                f"parallel efficiency, {real['workers']} workers",
                f"{real['parallel_wells_per_s']:.1f} wells/s vs {real['serial_wells_per_s']:.1f} single-process "
                f"({real['wells']} wells)",
                "> 0.8",
                eff,
                eff > 0.8,
            )
        )

    # 7. the Dask executor against the local one
    dask = cases.get("dask")
    if _error(dask):
        out.append(_missing("dask executor vs local", ">= 0.85x", f"dask: {_error(dask)}"))
    elif dask is not None:
        cpu = dask.get("cpu_ms_per_well", {})
        cpu_text = "; CPU per well (server + workers) " + " vs ".join(
            f"{side} {cpu[side]['server']:.0f} + {cpu[side]['workers']:.0f} ms" for side in ("dask", "local")
        )
        out.append(
            _row(
                f"dask executor vs local, {dask['workers']} workers each",
                f"{dask['dask_wells_per_s']:.1f} vs {dask['local_wells_per_s']:.1f} wells/s ({dask['wells']} wells); "
                f"Dask per-well overhead {dask['dask_overhead_ms_per_well']:+.1f} ms on "
                f"{dask['local_ms_per_well']:.0f} ms of worker time per well" + (cpu_text if len(cpu) == 2 else ""),
                ">= 0.85x",
                dask["ratio"],
                dask["ratio"] >= 0.85,
            )
        )
    from . import report_real

    return out + report_real.rows(data)


def markdown(data: dict[str, Any]) -> str:
    meta = data["meta"]
    loads = [v[0] for v in meta.get("loadavg", {}).values()]
    load = f", 1-min load {min(loads):.1f}-{max(loads):.1f}" if loads else ""
    # A case measured again on its own later (``python -m benchmarks --only CASE``, spliced into this JSON).
    rerun = "".join(f"; {case} re-run {when}" for case, when in meta.get("rerun", {}).items())
    lines = [
        f"Benchmarks ({meta['mode']}, {meta['when']}, Python {meta['python']}, {meta['cpus']} CPUs{load}{rerun})",
        "",
        "| case | figure | target | ratio | met? |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in data["rows"]:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['case']} | {r['figure']} | {r['target']} | {ratio} | {met} |")
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """Four panels: per-plate time vs N (with the floor), memory per plate vs N, ours vs anchor, GUI lateness."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(data)
    cases = data["cases"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    if series:
        ns = sorted(series)
        ax.plot(ns, [series[n]["per_plate_us"] for n in ns], "o-", label="hcs_batch (compile + run)")
        floor = cases.get("floor") or {}
        if "floor_per_plate_us" in floor:
            ax.plot(ns, [floor["floor_per_plate_us"]] * len(ns), "--", label="floor (raw pyzmq, pipelined)")
            ax.plot(ns, [3 * floor["floor_per_plate_us"]] * len(ns), ":", label="target: 3x floor")
        if "floor_with_files_per_plate_us" in floor:
            ax.plot(ns, [floor["floor_with_files_per_plate_us"]] * len(ns), "-.", label="floor + results files")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_title("time per no-op plate")
    ax.set_xlabel("plates (N)")
    ax.set_ylabel("µs per plate")

    ax = axes[0][1]
    if series:
        ns = [n for n in sorted(series) if series[n].get("tracemalloc_per_plate_bytes")]
        ax.plot(ns, [series[n]["tracemalloc_per_plate_bytes"] / 1024 for n in ns], "o-", label="tracemalloc peak")
        ns2 = [n for n in sorted(series) if series[n].get("rss_delta_per_plate_bytes")]
        ax.plot(ns2, [series[n]["rss_delta_per_plate_bytes"] / 1024 for n in ns2], "s--", label="peak RSS growth")
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_title("client memory per plate")
    ax.set_xlabel("plates (N)")
    ax.set_ylabel("KiB per plate")

    ax = axes[1][0]
    anchor = cases.get("anchor") or {}
    if series and "plates_per_s" in anchor:
        n = min(series, key=lambda k: abs(k - anchor["plates"]))
        control = series[max(series)].get("control") or {}
        labels = ["plates/s", "control req/s"]
        ours = [series[n]["plates_per_s"], control.get("seq_per_s", 0)]
        theirs = [anchor["plates_per_s"], anchor["control_requests_per_s"]]
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], ours, 0.4, label="hcs_batch")
        ax.bar([i + 0.2 for i in x], theirs, 0.4, label="zmqruntime 0.6.5")
        ax.set_xticks(list(x), labels)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_title("against the anchor")

    ax = axes[1][1]
    gui = cases.get("gui") or {}
    if "run" in gui:
        labels = ["p50", "p99", "max"]
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], [gui["idle"][f"{k}_ms"] for k in labels], 0.4, label="Trio idle")
        ax.bar([i + 0.2 for i in x], [gui["run"][f"{k}_ms"] for k in labels], 0.4, label=f"{gui['plates']:,}-plate run")
        ax.axhline(5, linestyle=":", color="gray", label="p99 target 5 ms")
        ax.set_xticks(list(x), labels)
        ax.legend(fontsize=8)
    ax.set_title("10 ms QTimer lateness in guest mode")
    ax.set_ylabel("ms")
    fig.suptitle(f"hcs_batch benchmarks ({data['meta']['mode']}, {data['meta']['when']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def update_readme(readme: Path, table: str) -> None:
    """Replace the block between the bench marks in README.md (else the placeholder; else append a section)."""
    text = readme.read_text() if readme.exists() else ""
    block = (
        f"{README_START}\n{table}\n![benchmark plot](benchmarks/results/latest.png)\n\n"
        "Regenerate with `make bench` (quick) or `make bench FULL=1`; raw figures in "
        f"`benchmarks/results/latest.json`.\n{README_END}"
    )
    if README_START in text and README_END in text:
        text = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: block, text, flags=re.S)
    elif README_PLACEHOLDER in text:
        text = text.replace(README_PLACEHOLDER, block, 1)
    else:
        text = text.rstrip("\n") + "\n\n## Benchmarks\n\n" + block + "\n"
    readme.write_text(text)
