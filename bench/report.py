"""A `digitvae bench` report as text: header, latency, throughput, bounds, cold start, targets."""

from __future__ import annotations

from typing import Any


def format_report(report: dict[str, Any]) -> str:
    """Render a bench report as text: header, latency, throughput, bounds, cold start, targets."""
    sections = (_header_lines, _latency_lines, _throughput_lines, _bound_lines, _cold_start_lines, _target_lines)
    return "\n".join(line for section in sections for line in section(report))


def _header_lines(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    lines = [
        f"{report['model']} {report['variant']} on {', '.join(report['providers'])}, threads {report['threads']}; "
        f"{m['cpu']}, {m['cores']} cores; onnxruntime {m['onnxruntime']}; best of {report['repeats']} repeats",
        f"torch: {report['torch']}",
    ]
    if report.get("quick"):
        lines.append("quick run: a setup check with few, short repeats; its figures are not to be quoted")
    return lines


def _latency_lines(report: dict[str, Any]) -> list[str]:
    lat = report["latency"]
    lines = [
        "",
        f"batch-1 generate latency ({lat['calls']} calls a repeat)   p50 us    p99 us   p50 / onnxruntime",
    ]
    for name in _contenders(lat):
        row = lat[name]
        lines.append(f"  {name:<38}{row['p50']:8.1f}  {row['p99']:8.1f}  {row['ratio_to_onnxruntime']:10.2f}")
    dec = report.get("latency_decode")
    if dec:
        lines.append("batch-1 decode latency" + " " * 33 + "generate / decode")
        for name in _contenders(dec):
            row = dec[name]
            lines.append(
                f"  {name:<38}{row['p50']:8.1f}  {row['p99']:8.1f}  {row['ratio_to_onnxruntime']:10.2f}"
                f"  {report['generate_over_decode'][name]:10.2f}"
            )
    return lines


def _throughput_lines(report: dict[str, Any]) -> list[str]:
    thr = report["throughput"]
    names = _contenders(thr[next(k for k in thr if k != "unit")])
    lines = ["", "throughput, digits/s" + " " * 21 + "".join(f"{n:>13}" for n in names) + "   digitvae / onnxruntime"]
    for task, row in thr.items():
        if task == "unit":
            continue
        label = task.replace("_", " batch ")
        ratio = row["ratio_to_onnxruntime"]["digitvae"]
        lines.append(f"  {label:<39}" + "".join(f"{row[n]:13,.0f}" for n in names) + f"   {ratio:10.2f}")
    return lines


def _bound_lines(report: dict[str, Any]) -> list[str]:
    bound = report["bound"]
    lines = [""]
    if "digits_per_s" in bound:
        fraction = bound["fraction"]["digitvae"]
        lines.append(
            f"hardware bound: decoder {bound['flops_per_digit'] / 1e6:.3g} MFLOP/digit at the {bound['gemm']} GEMM peak "
            f"of {bound['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s = {bound['digits_per_s']:,.0f} digits/s; "
            f"{bound['task'].replace('_', ' batch ')} reaches {fraction:.2f} of it"
        )
        if round(fraction, 2) > 1:  # as printed: "reaches 1.00" comes without the note
            why = (
                "a --quick run's small GEMM makes it lower still)" if report.get("quick") else "do not read it as one)"
            )
            lines.append(
                "  (above 1: numpy's GEMM here runs below onnxruntime's kernels, so this bound is not the machine's; "
                + why
            )
    else:
        lines.append(f"hardware bound: {bound['note']}")
    stream = report.get("latency_bound", {})
    if "gemv_us" in stream:
        lines.append(
            f"batch-1 bound: streaming the decoder's {stream['weights_mib']:.1f} MiB of float32 weights once "
            f"({stream['gemv']}) takes {stream['gemv_us']:.1f} us; batch-1 generate p50 is "
            + ", ".join(f"{name} {1 / f:.2f}x" for name, f in stream["fraction"].items())
            + " of it"
        )
    elif stream:
        lines.append(f"batch-1 bound: {stream['note']}")
    return lines


def _cold_start_lines(report: dict[str, Any]) -> list[str]:
    cold = report.get("cold_start")
    if not cold:
        return []
    ours, base = cold["digitvae"], cold["onnxruntime"]
    lines = [
        f"cold start, median of {cold['runs']}: `{cold['command']}` {ours['wall_s']:.3f} s, {_mib(ours)}; "
        f"`{cold['baseline']}` {base['wall_s']:.3f} s, {_mib(base)}; wall ratio {cold['wall_ratio']:.2f}"
    ]
    if cold.get("dont_write_bytecode"):
        lines.append("  (PYTHONDONTWRITEBYTECODE is set: modules without cached bytecode compile on every start)")
    return lines


def _target_lines(report: dict[str, Any]) -> list[str]:
    targets = report.get("targets")
    if not targets:
        return []
    lines = ["", "targets, each a ratio measured in this run" + " " * 44 + "ratio   target"]
    for row in targets.values():
        mark = "met" if row["met"] else "MISSED"
        unit = row.get("unit", "us")
        figures = f" ({row['ours_us']:,.1f} {unit} vs {row['plain_us']:,.1f} {unit})" if "ours_us" in row else ""
        label = f"{row['ours']} / {row['plain']}{figures}"
        lines.append(f"  {label:<84}{row['ratio']:6.2f}   {row['target']} {row['limit']:g}: {mark}")
    return lines


def _contenders(row: dict[str, Any]) -> list[str]:
    return [k for k in ("digitvae", "onnxruntime", "torch") if k in row]


def _mib(entry: dict[str, Any]) -> str:
    return "peak RSS unknown" if entry["peak_rss_mib"] is None else f"{entry['peak_rss_mib']:.1f} MiB peak RSS"
