"""report.py - the Markdown section and the SVG plots written by side_by_side.py (standard library only)."""

import os

MARK_BEGIN = "<!-- side-by-side:begin -->"
MARK_END = "<!-- side-by-side:end -->"
COLORS = {"Fjord": "#1f77b4", "Kafka": "#ff7f0e"}
# side_by_side.py --fjord-direct: Fjord with log.direct.io=auto, as a broker of its own
DIRECT_LABEL = "Fjord direct"


def fmt_num(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def disk_rate(limits):
    rates = [x["mb_s"] for x in (limits.get("seq_write"), limits.get("direct_write")) if x]
    return max(rates) if rates else None


def mib(kib):
    return None if kib is None else kib / 1024


def throughput_rows(doc):
    """(row id, title, generator, acks) for every throughput row, in report order."""
    cfg = doc["config"]
    rows = [(sc["id"], sc["title"], sc.get("gen", "rdkafka"), sc.get("acks"), sc.get("kind", "produce"))
            for sc in cfg["scenarios"]]
    if "retained" in cfg.get("groups", []):
        base = f"produce 1 KiB, acks=1, {cfg.get('retained_partitions', 16)} partitions, 1 producer"
        rows.append(("retained-empty", base + ", empty broker", "rdkafka", "1", "produce"))
        rows.append(("retained-full", base + f", {cfg.get('retained_gib', 20):g} GiB retained", "rdkafka", "1",
                     "produce"))
    return rows


# ----------------------------------------------------------------------------------------------
# SVG


def svg_throughput(doc, path):
    """Horizontal grouped bars: one group per throughput row, Fjord and Kafka MB/s."""
    res = doc["results"]
    data = []
    for rid, title, gen, _acks, _kind in throughput_rows(doc):
        f = res.get("Fjord", {}).get(rid, {}).get("mb_s")
        k = res.get("Kafka", {}).get(rid, {}).get("mb_s")
        if f is None and k is None:
            continue
        data.append((f"{title} [{gen}]", f, k))
    left, right, top, bar_h, gap = 430, 90, 50, 9, 8
    group_h = 2 * bar_h + gap
    plot_w = 520
    height = top + group_h * max(len(data), 1) + 50
    width = left + plot_w + right
    vmax = max([v for _, f, k in data for v in (f, k) if v] + [1.0])
    step = 10 ** max(0, len(str(int(vmax))) - 1)
    axis_max = ((int(vmax) // step) + 1) * step
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">Throughput per scenario, MB/s '
         f'(record values; broker pinned to one core) [load generator]</text>']
    y_end = top + group_h * len(data)
    for i in range(6):
        v = axis_max * i / 5
        x = left + plot_w * v / axis_max
        o.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{y_end}" stroke="#ddd"/>')
        o.append(f'<text x="{x:.1f}" y="{top - 10}" text-anchor="middle">{v:,.0f}</text>')
    for gi, (label, f, k) in enumerate(data):
        y0 = top + gi * group_h
        o.append(f'<text x="{left - 8}" y="{y0 + bar_h + 4}" text-anchor="end">{esc(label)}</text>')
        for bi, (name, v) in enumerate((("Fjord", f), ("Kafka", k))):
            y = y0 + bi * bar_h
            if v is None:
                o.append(f'<text x="{left + 4}" y="{y + bar_h - 1}" fill="#999" font-size="9">n/a</text>')
                continue
            w = plot_w * v / axis_max
            o.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h - 1}" fill="{COLORS[name]}">'
                     f'<title>{name}: {v:,.1f} MB/s</title></rect>')
            o.append(f'<text x="{left + w + 3:.1f}" y="{y + bar_h - 1}" font-size="9">{v:,.0f}</text>')
    ly = height - 20
    for i, name in enumerate(("Fjord", "Kafka")):
        lx = left + i * 120
        o.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{COLORS[name]}"/>')
        o.append(f'<text x="{lx + 18}" y="{ly}">{name}{" 4.3.1" if name == "Kafka" else ""}</text>')
    o.append("</svg>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(o) + "\n")


def latency_points(doc, broker):
    pts = []
    for p in doc["config"].get("e2e_points", []):
        r = doc["results"].get(broker, {}).get(p["id"])
        if r and r.get("latency") and p["kind"] != "peak":
            pts.append((r["mb_s"], r["latency"], p))
    pts.sort(key=lambda x: x[0])
    return pts


def svg_latency(doc, path):
    """Latency percentiles (log scale) against the achieved load, one line per broker and percentile."""
    import math
    series = {b: latency_points(doc, b) for b in ("Fjord", "Kafka")}
    if not any(series.values()):
        return False
    left, right, top, bottom, pw, ph = 70, 170, 40, 50, 560, 320
    width, height = left + pw + right, top + ph + bottom
    xs = [x for s in series.values() for x, _, _ in s]
    ys = [lat[k] for s in series.values() for _, lat, _ in s for k in ("p50_ms", "p99_ms", "p999_ms")
          if lat.get(k)]
    xmax = max(xs) * 1.1 if xs else 1.0
    ylo = 10 ** math.floor(math.log10(max(min(ys), 1e-3)))
    yhi = 10 ** math.ceil(math.log10(max(ys) * 1.01))
    if yhi <= ylo:
        yhi = ylo * 10

    def X(v):
        return left + pw * v / xmax

    def Y(v):
        v = max(v, ylo)
        return top + ph - ph * (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo))

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left + pw / 2}" y="20" text-anchor="middle" font-size="14">End-to-end latency '
         f'(produce to consume) vs load</text>']
    d = ylo
    while d <= yhi * 1.0001:
        y = Y(d)
        o.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{d:g} ms</text>')
        d *= 10
    step = 10 ** max(0, len(str(int(xmax))) - 1)
    v = 0
    while v <= xmax:
        x = X(v)
        o.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#eee"/>')
        o.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{v:,.0f}</text>')
        v += step if xmax / step < 12 else step * 2
    o.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">load, MB/s of record values '
             f'(achieved)</text>')
    o.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    styles = {"p50_ms": ("p50", ""), "p99_ms": ("p99", "6,3"), "p999_ms": ("p99.9", "2,3")}
    ly = top + 10
    for b, pts in series.items():
        for k, (name, dash) in styles.items():
            coords = [(X(x), Y(lat[k])) for x, lat, _ in pts if lat.get(k) is not None]
            if not coords:
                continue
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            o.append(f'<polyline fill="none" stroke="{COLORS[b]}" stroke-width="2"{dash_attr} points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in coords) + '"/>')
            for (x, y), (xv, lat, p) in zip(coords, [q for q in pts if q[1].get(k) is not None]):
                o.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLORS[b]}"><title>{b} {name} '
                         f'{lat[k]:.2f} ms at {xv:,.1f} MB/s ({esc(p["title"])})</title></circle>')
            lx = left + pw + 12
            o.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 28}" y2="{ly}" stroke="{COLORS[b]}" stroke-width="2"'
                     f'{dash_attr}/>')
            o.append(f'<text x="{lx + 34}" y="{ly + 4}">{b} {name}</text>')
            ly += 18
    o.append("</svg>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(o) + "\n")
    return True


# ----------------------------------------------------------------------------------------------
# Markdown


def bottleneck(r, broker_cpu, client_cpu):
    cb = r.get("core_busy", {})
    if r["client_busy"] >= 0.9:
        return "client"
    if r["broker_busy"] >= 0.9:
        return "broker"
    if cb.get(broker_cpu, 0) - r["broker_busy"] > 0.2 or cb.get(client_cpu, 0) - r["client_busy"] > 0.2:
        return "disturbed (other processes)"
    return "neither (round trips / disk)"


def limit_fraction(kind, acks, f, limits, long=False):
    if not f:
        return "—"
    if kind == "produce":
        disk = disk_rate(limits)
        if not disk:
            return "—"
        frac = f["mb_s"] / disk
        s = f"{frac * 100:.0f}% of disk"
        if long:
            s = (f"{f['mb_s']:,.0f} MB/s is {frac * 100:.0f}% of the disk's sequential write rate "
                 f"({disk:,.0f} MB/s)")
            lb = limits.get("loopback", {})
            if "mb_s" in lb:
                s += f" and {f['mb_s'] / lb['mb_s'] * 100:.0f}% of the loopback TCP rate ({lb['mb_s']:,.0f} MB/s)"
        return s
    lb = limits.get("loopback", {})
    if "mb_s" not in lb:
        return "—"
    frac = f["mb_s"] / lb["mb_s"]
    if long:
        return f"{f['mb_s']:,.0f} MB/s is {frac * 100:.0f}% of the loopback TCP rate ({lb['mb_s']:,.0f} MB/s)"
    return f"{frac * 100:.0f}% of loopback"


def durability_pair(acks):
    if acks == "-1":
        return "Fjord fdatasync / Kafka page cache"
    if acks in ("1", "0"):
        return "page cache / page cache"
    return "—"


def render_section(doc, svg_tp, svg_lat, broker_cpu, client_cpu, gen_names):
    meta, limits, results, cfg = doc["meta"], doc["limits"], doc["results"], doc["config"]
    mode = cfg.get("mode", "quick" if cfg.get("quick") else "full")
    brokers = [b for b in ("Fjord", "Kafka") if b in results]
    both = len(brokers) == 2
    L = [MARK_BEGIN, "## Fjord vs Apache Kafka 4.3.1, side by side", ""]
    mode_text = {"full": "full mode", "quick": "quick mode: runs of a few seconds and small data sets, numbers "
                 "are indicative only", "smoke": "smoke mode: a check that the harness runs, not a measurement"}
    wall = f", {meta['wall_minutes']:.0f} minutes" if meta.get("wall_minutes") else ""
    L.append(f"Generated by `{meta.get('invocation', 'python3 scripts/bench/side_by_side.py')}` on {meta['date']} "
             f"({mode_text[mode]}{wall}). Regenerate with `cargo xtask bench` (the same harness, after building "
             "the release binary and the tools); only this section, between the side-by-side markers, is "
             "rewritten.")
    L.append("")
    L.append("### Method")
    L.append("")
    L.append(f"- Machine: {meta['nproc']} CPUs ({meta['cpu_model']}), {meta['mem_gib']} GiB RAM, Linux "
             f"{meta['kernel']}; data dirs of both brokers on `{meta['fs'][0]}` ({meta['fs'][1]}, mounted at "
             f"`{meta['fs'][2]}`).")
    L.append(f"- Load average (1/5/15 min): {meta['load_before']} before the run, {meta.get('load_after', '?')} "
             "after. Other work on these cores disturbs the numbers: compare ratios from the same run.")
    if meta.get("fjord_bin"):
        fb = meta["fjord_bin"]
        L.append(f"- Fjord: `{fb['path']}` built {fb['mtime']} (`cargo build --release -p fjord`), default settings"
                 + (f" plus `--set {' '.join(cfg['fjord_set'])}`" if cfg.get("fjord_set") else "") + ".")
    if "Kafka" in results:
        ks = cfg.get("kafka_set_effective") or cfg.get("kafka_set") or []
        L.append("- Apache Kafka 4.3.1 from the Maven Central jars, KRaft combined broker+controller on one node, "
                 "started by `scripts/kafka.sh` (heap `-Xmx1g -Xms1g`, G1), default settings otherwise"
                 + (f" plus `{' '.join(ks)}` (deleted topics' files go after 1 s instead of 60 s, so that a "
                    "topic per scenario does not fill the disk)" if ks else "") + ".")
    L.append(f"- One broker at a time, pinned to CPU {broker_cpu} (`taskset -c {broker_cpu}`); every load generator "
             f"pinned to CPU {client_cpu}. Replication factor 1 everywhere. Each broker runs up to three sessions, "
             f"each on a fresh data dir deleted afterwards (main: throughput and latency; many: "
             f"{cfg.get('many_partitions', 10000):,} partitions; "
             "stored: restart and retained data), and each session starts with a warm-up produce run (the JVM "
             "needs it) before anything is measured.")
    L.append(f"- Load generators, the same for both brokers: librdkafka {meta.get('librdkafka', '?')} "
             "`rdkafka_performance` built from the crates.io crate rdkafka-sys (its defaults: linger.ms=1000, "
             "batch.size 1,000,000 bytes, no compression; 8 producers = 8 processes at once); Kafka's "
             "`kafka-producer-perf-test` / `kafka-consumer-perf-test` (`org.apache.kafka.tools.ProducerPerformance`"
             " with `batch.size=131072 linger.ms=5`, `ConsumerPerformance` in a consumer group); `fjord bench` "
             "(128 KiB batches, 5 requests in flight per producer). Values are random bytes of the stated size, no "
             "keys. The generator of each row is in brackets.")
    L.append(f"- Produce runs by count (rdkafka_performance, kafka-producer-perf-test) are sized from a short probe "
             f"run of the same scenario to last about {cfg['target_seconds']:g} s; `fjord bench` runs for "
             f"{cfg['target_seconds']:g} s. `sync` runs before every measured run. Consume runs read the topic "
             "written by the scenario's acks=1 row from offset 0 (page cache), repeated until they add up to the "
             "target time.")
    L.append("- MB/s is 10^6 bytes of record values per second. CPU-s/GB is the broker's utime+stime "
             "(/proc/PID/stat, all threads) during the run divided by the GB (10^9 bytes) of values moved. RSS "
             "peak is the highest VmRSS of the broker sampled every 100 ms during the run (/proc/PID/status).")
    L.append("- Durability, per row in the tables: acks=1 is acknowledged from the page cache on both brokers. "
             "For acks=all Fjord fdatasyncs before acknowledging (its default group commit) while Kafka "
             "acknowledges from the page cache (no fsync with its default flush settings): acks=all rows compare "
             "a durable Fjord with a non-durable Kafka.")
    if cfg.get("rounds", 1) > 1:
        L.append(f"- {cfg['rounds']} rounds, the brokers' order alternating; each row shows the round with the "
                 "highest throughput.")
    L.append("")
    L.append("### Machine limits (same run, same disk)")
    L.append("")
    L.append("| limit | value | how |")
    L.append("|---|---|---|")
    sw = limits.get("seq_write")
    if sw:
        L.append(f"| sequential write | {sw['mb_s']:,.0f} MB/s | {sw['bytes'] / 2**30:.2f} GiB in 4 MiB writes, "
                 "one fdatasync at the end |")
    dw = limits.get("direct_write")
    if dw:
        L.append(f"| sequential write, O_DIRECT | {dw['mb_s']:,.0f} MB/s | {dw['bytes'] / 2**30:.2f} GiB in 4 MiB "
                 "O_DIRECT writes (no page cache) |")
    if disk_rate(limits):
        L.append(f"| **disk reference** | {disk_rate(limits):,.0f} MB/s | the better of the two lines above; "
                 "\"% of disk\" figures use it |")
    fs = limits.get("fdatasync")
    if fs:
        L.append(f"| 4 KiB append + fdatasync | {fs['syncs_s']:,.0f} syncs/s (median {fs['median_us']:.0f} µs, "
                 f"p99 {fs['p99_us']:.0f} µs) | {fs['count']:,} appends, one file |")
    lb = limits.get("loopback", {})
    if "mb_s" in lb:
        L.append(f"| loopback TCP | {lb['mb_s']:,.0f} MB/s | one stream, 256 KiB writes, receiver on CPU "
                 f"{broker_cpu}, sender on CPU {client_cpu} (C, compiled at run time) |")
    else:
        L.append(f"| loopback TCP | not measured | {lb.get('skipped', '?')} |")
    L.append("")
    L.append("\"Fjord vs limit\" is Fjord's throughput as a fraction of these: produce rows against the disk "
             "reference (acks=1 lands in the page cache and can run past it), consume rows against loopback TCP "
             "(a broker sending from the page cache with sendfile(2) saves a copy and can run past it).")
    L.append("")

    # --- throughput summary
    L.append("### Throughput")
    L.append("")
    if both:
        L.append("| scenario [generator] | Fjord MB/s | Kafka MB/s | **Fjord/Kafka** | Fjord CPU-s/GB | Kafka CPU-s/GB "
                 "| CPU ratio | RSS peak MiB Fjord / Kafka | durability | Fjord vs limit |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    else:
        b = brokers[0] if brokers else "?"
        L.append(f"| scenario [generator] | {b} records/s | {b} MB/s | {b} CPU-s/GB | RSS peak MiB | durability "
                 "| vs limit |")
        L.append("|---|---:|---:|---:|---:|---|---:|")
    for rid, title, gen, acks, kind in throughput_rows(doc):
        f = results.get("Fjord", {}).get(rid)
        k = results.get("Kafka", {}).get(rid)
        if not f and not k:
            continue
        label = f"{title} [{gen_names.get(gen, gen)}]"
        if both:
            L.append(f"| {label} | {fmt_num(f and f['mb_s'])} | {fmt_num(k and k['mb_s'])} | "
                     f"**{ratio(f and f['mb_s'], k and k['mb_s'])}** | {fmt_num(f and f['cpu_s_per_gb'], 2)} | "
                     f"{fmt_num(k and k['cpu_s_per_gb'], 2)} | "
                     f"{ratio(f and f['cpu_s_per_gb'], k and k['cpu_s_per_gb'])} | "
                     f"{fmt_num(f and mib(f.get('rss_peak_kib')))} / {fmt_num(k and mib(k.get('rss_peak_kib')))} | "
                     f"{durability_pair(acks)} | {limit_fraction(kind, acks, f, limits)} |")
        else:
            r = f or k
            L.append(f"| {label} | {fmt_num(r['msgs_s'])} | {fmt_num(r['mb_s'], 1)} | "
                     f"{fmt_num(r['cpu_s_per_gb'], 2)} | {fmt_num(mib(r.get('rss_peak_kib')))} | "
                     f"{r.get('durability', '—')} | {limit_fraction(kind, acks, r, limits) if f else '—'} |")
    L.append("")
    L.append(f"![throughput per scenario]({svg_tp})")
    L.append("")

    direct_section(L, doc, gen_names)

    # --- end-to-end latency
    pts = cfg.get("e2e_points", [])
    if pts and any(results.get(b, {}).get(p["id"]) for b in brokers for p in pts):
        L.append("### End-to-end latency")
        L.append("")
        L.append(f"`fjord bench e2e`: {cfg['e2e_size']} B records, acks={'all' if cfg['e2e_acks'] == '-1' else '1'}, "
                 f"{cfg['e2e_partitions']} partitions, one producer and one consumer; latency from the producer's "
                 "send to the consumer's receipt of each record (HDR histogram). The peak is an unthrottled run of "
                 "the same; the other points are offered at a fraction of each broker's own peak, or at the same "
                 "fixed rate for both.")
        L.append("")
        L.append("| load | broker | offered MB/s | achieved MB/s | p50 ms | p99 ms | p99.9 ms | max ms | "
                 "CPU-s/GB | RSS peak MiB |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in pts:
            for b in brokers:
                r = results[b].get(p["id"])
                if not r:
                    continue
                lat = r.get("latency") or {}
                L.append(f"| {p['title']} | {b} | {fmt_num(r.get('offered_mb_s'), 1)} | {fmt_num(r['mb_s'], 1)} | "
                         f"{fmt_num(lat.get('p50_ms'), 2)} | {fmt_num(lat.get('p99_ms'), 2)} | "
                         f"{fmt_num(lat.get('p999_ms'), 2)} | {fmt_num(lat.get('max_ms'), 2)} | "
                         f"{fmt_num(r['cpu_s_per_gb'], 2)} | {fmt_num(mib(r.get('rss_peak_kib')))} |")
        L.append("")
        if svg_lat:
            L.append(f"![latency percentiles vs load]({svg_lat})")
            L.append("")

    # --- many partitions
    if any(results.get(b, {}).get("many") for b in brokers):
        m0 = next(results[b]["many"] for b in brokers if results[b].get("many"))
        L.append(f"### {m0['partitions']:,} partitions")
        L.append("")
        L.append(f"{m0['topics']} topics of {m0['partitions'] // m0['topics']:,} partitions (Kafka refuses a single "
                 "request that creates more than ~10,000 metadata records), created with CreateTopics requests "
                 f"from the harness; then `fjord bench e2e` on every topic at once at {cfg['many_rate']:g} records/s "
                 f"per partition ({cfg['many_size']} B records, acks={'all' if cfg['many_acks'] == '-1' else '1'}; "
                 "one producer and one consumer per topic; latency is the worst topic's). The broker is then "
                 "killed (a clean stop of Kafka with this many partitions takes minutes; not measured).")
        L.append("")
        L.append("| | " + " | ".join(brokers) + (" | Fjord/Kafka |" if both else " |"))
        L.append("|---|" + "---:|" * (len(brokers) + (1 if both else 0)))
        mrs = [results[b].get("many") for b in brokers]

        def mrow(name, fn, digits=0, with_ratio=True):
            vals = [fn(r) if r else None for r in mrs]
            extra = f" {ratio(vals[0], vals[1]) if with_ratio else ''} |" if both else ""
            L.append(f"| {name} | " + " | ".join(fmt_num(v, digits) for v in vals) + " |" + extra)

        mrow("CreateTopics answered (s)", lambda r: r["create_answered_s"], 1)
        mrow("every partition led (Metadata) (s)", lambda r: r["leaders_s"], 1)
        mrow("every partition's directory on disk (s)", lambda r: r["ready_s"], 1)
        mrow("broker CPU-s to create", lambda r: r["create_cpu_s"], 1)
        mrow("RSS before creating (MiB)", lambda r: mib(r["rss_before_kib"]))
        mrow("RSS after creating (MiB)", lambda r: mib(r["rss_after_create_kib"]))
        mrow("load: records/s", lambda r: r["msgs_s"])
        mrow("load: MB/s", lambda r: r["mb_s"], 1)
        mrow("latency p50 (ms)", lambda r: (r.get("latency") or {}).get("p50_ms"), 1)
        mrow("latency p99 (ms)", lambda r: (r.get("latency") or {}).get("p99_ms"), 1)
        mrow("latency p99.9 (ms)", lambda r: (r.get("latency") or {}).get("p999_ms"), 1)
        mrow("latency max (ms)", lambda r: (r.get("latency") or {}).get("max_ms"), 1)
        mrow("broker CPU (share of one core)", lambda r: r["broker_busy"] * 100, 0)
        mrow("broker CPU-s per GB", lambda r: r["cpu_s_per_gb"], 1)
        mrow("RSS peak under load (MiB)", lambda r: mib(r["rss_peak_kib"]))
        L.append("")

    # --- stored data
    have_restart = any(results.get(b, {}).get("restart-clean") or results.get(b, {}).get("restart-kill9")
                       for b in brokers)
    have_ret = any(results.get(b, {}).get("retained-full") for b in brokers)
    if have_restart or have_ret:
        L.append("### Stored data: restart and retained")
        L.append("")
        L.append(f"One topic of {cfg.get('fill_partitions', 8)} partitions filled with 1 KiB records by `fjord bench "
                 "produce` (acks=1). Restart time: from exec of the broker until a Metadata request shows every "
                 "partition of that topic with a leader, polled every 20 ms; first after `kill -9` (no clean "
                 "shutdown: the broker recovers its logs), then after SIGTERM (clean shutdown). `sync` runs before "
                 "each start; the page cache stays warm. Retained: the same produce row (rdkafka_performance, "
                 "1 KiB, acks=1, 16 partitions, into a new topic) on the empty broker and again with the data "
                 "retained.")
        L.append("")
        L.append("| | " + " | ".join(brokers) + (" | Fjord/Kafka |" if both else " |"))
        L.append("|---|" + "---:|" * (len(brokers) + (1 if both else 0)))

        def srow(name, key, fn, digits=1, with_ratio=True):
            vals = []
            for b in brokers:
                r = results[b].get(key)
                vals.append(fn(r) if r else None)
            extra = f" {ratio(vals[0], vals[1]) if with_ratio else ''} |" if both else ""
            L.append(f"| {name} | " + " | ".join(fmt_num(v, digits) for v in vals) + " |" + extra)

        if have_restart:
            srow("GiB of records stored (values)", "fill-restart", lambda r: r["bytes"] / 2**30, 2, False)
            srow("GiB on disk in the data dir at restart", "restart-kill9", lambda r: r["stored_bytes"] / 2**30, 2,
                 False)
            srow("fill rate (MB/s, fjord bench, acks=1)", "fill-restart", lambda r: r["mb_s"], 0)
            srow("restart after kill -9: serving after (s)", "restart-kill9", lambda r: r["ready_s"], 2)
            srow("  broker CPU-s until serving", "restart-kill9", lambda r: r["cpu_s"], 2)
            srow("  RSS when serving (MiB)", "restart-kill9", lambda r: mib(r["rss_kib"]), 0)
            srow("clean stop: SIGTERM until exit (s)", "restart-clean", lambda r: r["down_s"], 2)
            srow("restart after clean stop: serving after (s)", "restart-clean", lambda r: r["ready_s"], 2)
            srow("  broker CPU-s until serving", "restart-clean", lambda r: r["cpu_s"], 2)
            srow("  RSS when serving (MiB)", "restart-clean", lambda r: mib(r["rss_kib"]), 0)
        if have_ret:
            srow("GiB retained (on disk)", "retained-full", lambda r: r["stored_bytes"] / 2**30, 2, False)
            srow("produce MB/s, empty", "retained-empty", lambda r: r["mb_s"], 0)
            srow("produce MB/s, data retained", "retained-full", lambda r: r["mb_s"], 0)
            srow("CPU-s/GB, empty", "retained-empty", lambda r: r["cpu_s_per_gb"], 2)
            srow("CPU-s/GB, data retained", "retained-full", lambda r: r["cpu_s_per_gb"], 2)
            srow("RSS peak MiB, data retained", "retained-full", lambda r: mib(r["rss_peak_kib"]), 0)
            for b in brokers:
                e, f = results[b].get("retained-empty"), results[b].get("retained-full")
                if e and f and e["mb_s"]:
                    L.append(f"| {b}: retained / empty | " + " | ".join(
                        f"{f['mb_s'] / e['mb_s']:.2f}×" if bb == b else "" for bb in brokers) + (" | |" if both else " |"))
        L.append("")

    # --- start and memory
    L.append("### Broker start and memory")
    L.append("")
    L.append("| | " + " | ".join(brokers) + " |")
    L.append("|---|" + "---:|" * len(brokers))
    L.append("| start to serving, empty data dir (s) | " + " | ".join(
        f"{results[b].get('_start_seconds') or 0:.2f}" for b in brokers) + " |")
    L.append("| idle RSS after start (MiB) | " + " | ".join(
        f"{(results[b].get('_idle_rss_kib') or 0) / 1024:.0f}" for b in brokers) + " |")
    L.append("| peak RSS over the run, VmHWM (MiB) | " + " | ".join(
        f"{(results[b].get('_final_hwm_kib') or 0) / 1024:.0f}" for b in brokers) + " |")
    L.append("")
    L.append("Kafka's start time includes `kafka.sh` formatting the storage and the JVM start; its heap is "
             "`-Xmx1g -Xms1g`. Fjord's is the time from exec to accepting connections.")
    L.append("")

    # --- details
    L.append("### Every measured run")
    L.append("")
    L.append("<details><summary>records/s, seconds, CPU split and memory of each run</summary>")
    L.append("")
    L.append(f"| scenario [generator] | broker | records/s | MB/s | s | CPU-s/GB | kernel share | broker CPU | "
             f"client CPU | CPU{broker_cpu} / CPU{client_cpu} busy | RSS peak MiB | saturated |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    detail_ids = [(rid, f"{title} [{gen_names.get(gen, gen)}]") for rid, title, gen, _a, _k in throughput_rows(doc)]
    detail_ids += [(p["id"], f"end-to-end, {p['title']}") for p in pts]
    detail_ids += [("many", "many partitions, light load"), ("fill-restart", "fill (restart)"),
                   ("fill-retained", "fill (retained)")]
    for rid, label in detail_ids:
        for b in brokers:
            r = results[b].get(rid)
            if not r or "mb_s" not in r:
                continue
            cb = r.get("core_busy", {})
            kern = f"{r['broker_sys_s'] / r['broker_cpu_s'] * 100:.0f}%" if r["broker_cpu_s"] > 0 else "—"
            L.append(f"| {label} | {b} | {fmt_num(r['msgs_s'])} | {fmt_num(r['mb_s'], 1)} | {r['seconds']:.1f} | "
                     f"{fmt_num(r['cpu_s_per_gb'], 2)} | {kern} | {r['broker_busy'] * 100:.0f}% | "
                     f"{r['client_busy'] * 100:.0f}% | {cb.get(broker_cpu, 0) * 100:.0f}% / "
                     f"{cb.get(client_cpu, 0) * 100:.0f}% | {fmt_num(mib(r.get('rss_peak_kib')))} | "
                     f"{bottleneck(r, broker_cpu, client_cpu)} |")
    L.append("")
    L.append("</details>")
    L.append("")

    # --- commands
    L.append("### Commands")
    L.append("")
    L.append("The whole run: `cargo xtask bench` (full), `cargo xtask bench --quick` (small scale, writes "
             "scripts/bench/results/quick.md), `cargo xtask bench --smoke` (CI: Fjord only, seconds), or "
             "`python3 scripts/bench/side_by_side.py --help` for scenario selection (`--scenarios "
             "produce,consume,java,fjordgen,e2e,many,restart,retained`) and scale (`--seconds`, `--restart-gib`, "
             "`--retained-gib`, `--many-partitions`, `--partitions`, `--sizes`, `--producers`).")
    L.append("")
    L.append("<details><summary>exact commands of this run (ports and temporary paths change from run to run)"
             "</summary>")
    L.append("")
    L.append("```")
    for label, cmd in doc["commands"]:
        L.append(f"# {label}")
        L.append(cmd)
    L.append("```")
    L.append("")
    L.append("</details>")
    L.append("")
    L.append("### Problems seen in this run")
    L.append("")
    if doc["problems"]:
        for p in doc["problems"]:
            L.append("- " + p.replace("\n", " ")[:600])
    else:
        L.append("None.")
    L.append(MARK_END)
    return "\n".join(L) + "\n"


def direct_section(L, doc, gen_names):
    """Fjord's two write paths next to each other (side_by_side.py --fjord-direct): buffered (the default
    settings) and direct (log.direct.io=auto, with the batch cache), each against Kafka of the same run."""
    results, cfg = doc["results"], doc["config"]
    d = results.get(DIRECT_LABEL)
    if not d:
        return
    f, k = results.get("Fjord", {}), results.get("Kafka", {})
    L.append("### Fjord's write paths: buffered and direct")
    L.append("")
    L.append(f"\"{DIRECT_LABEL}\" is the same Fjord binary with `--set log.direct.io=auto` (O_DIRECT appends, "
             "recent batches served from the batch cache, `log.cache.max.bytes` at its default), run as a broker of "
             "its own in the same rounds; \"Fjord\" is the default (buffered) write path.")
    L.append("")
    L.append("| scenario [generator] | buffered MB/s | direct MB/s | Kafka MB/s | **direct/buffered** | direct/Kafka "
             "| CPU-s/GB buffered / direct / Kafka | RSS peak MiB buffered / direct / Kafka | p99 ms buffered / "
             "direct / Kafka |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ids = [(rid, f"{title} [{gen_names.get(gen, gen)}]") for rid, title, gen, _a, _k in throughput_rows(doc)]
    ids += [(p["id"], f"end-to-end, {p['title']}") for p in cfg.get("e2e_points", [])]
    for rid, label in ids:
        rs = [f.get(rid), d.get(rid), k.get(rid)]
        if not rs[1]:
            continue

        def three(fn, digits):
            return " / ".join(fmt_num(fn(r) if r else None, digits) for r in rs)

        mb = [r["mb_s"] if r else None for r in rs]
        L.append(f"| {label} | {fmt_num(mb[0])} | {fmt_num(mb[1])} | {fmt_num(mb[2])} | **{ratio(mb[1], mb[0])}** | "
                 f"{ratio(mb[1], mb[2])} | {three(lambda r: r['cpu_s_per_gb'], 2)} | "
                 f"{three(lambda r: mib(r.get('rss_peak_kib')), 0)} | "
                 f"{three(lambda r: (r.get('latency') or {}).get('p99_ms'), 2)} |")
    L.append("")


def write_report(out_path, section):
    if os.path.exists(out_path):
        with open(out_path) as f:
            text = f.read()
        b, e = text.find(MARK_BEGIN), text.find(MARK_END)
        if b != -1 and e != -1 and e > b:
            text = text[:b] + section + text[e + len(MARK_END):].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        text = ("# Benchmarks\n\n"
                "Numbers measured on the project's development machines. Each section says how to regenerate it.\n\n"
                + section)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out_path)
