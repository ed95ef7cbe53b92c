// The side-by-side table of a benchmark report: one block per workload, one column per
// controller, and Ferry ÷ Argo where both ran. docs/performance.md explains each row.
import type { RetentionPoint, WorkloadResult } from './workloads.ts';

interface ReportLike {
  date: string;
  machine: { cpus: number; cpuModel: string; loadAverageAtStart: number[] };
  versions: Record<string, string>;
  results: WorkloadResult[];
  retention: RetentionPoint[];
  retentionError?: string;
}

interface Row {
  figure: string;
  /** ↑ when more is better, ↓ when less is. */
  better: '↑' | '↓' | '';
  values: Array<number | string | undefined>;
  digits?: number;
}

function format(value: number | string | undefined, digits = 1): string {
  if (value === undefined) return '–';
  if (typeof value === 'string') return value;
  if (!Number.isFinite(value)) return 'n/a';
  return value.toFixed(digits);
}

export function renderTable(report: ReportLike): string {
  const engines = [...new Set([...report.results.map((r) => r.engine), ...report.retention.map((r) => r.engine)])];
  const both = engines.includes('ferry') && engines.includes('argo');
  const header = ['figure', ...engines, ...(both ? ['ferry÷argo', 'ferry is'] : [])];
  const blocks: Array<{ title: string; rows: Row[] }> = [];

  const workloads = [...new Set(report.results.map((r) => r.workload))];
  for (const workload of workloads) {
    const of = (engine: string) => report.results.find((r) => r.workload === workload && r.engine === engine);
    const first = report.results.find((r) => r.workload === workload)!;
    const verbs = [...new Set(report.results.filter((r) => r.workload === workload).flatMap((r) => Object.keys(r.api.perStep)))].sort();
    const pick = (f: (r: WorkloadResult) => number | string | undefined) => engines.map((e) => { const r = of(e); return r ? f(r) : undefined; });
    // A forEach is one step: no step waits for another, so there is no handoff to show.
    const handoffRows: Row[] = report.results.some((r) => r.workload === workload && r.handoff.watchMs.count > 0)
      ? [
        { figure: 'handoff p50, ms', better: '↓', values: pick((r) => r.handoff.watchMs.p50), digits: 0 },
        { figure: 'handoff p99, ms', better: '↓', values: pick((r) => r.handoff.watchMs.p99), digits: 0 },
      ]
      : [];
    blocks.push({
      title: first.label,
      rows: [
        { figure: 'runs succeeded / failed', better: '', values: pick((r) => `${r.succeeded} / ${r.failed}${r.unfinished ? ` (${r.unfinished} unfinished${r.controllerExited ? ', controller exited' : ''})` : ''}`) },
        { figure: 'steps ended', better: '', values: pick((r) => r.steps), digits: 0 },
        { figure: 'steps/s at saturation', better: '↑', values: pick((r) => r.stepsPerSecond) },
        { figure: 'wall time, s', better: '↓', values: pick((r) => r.wallSeconds) },
        ...handoffRows,
        { figure: 'run duration p50, s', better: '↓', values: pick((r) => r.runDurationMs.p50 / 1000) },
        // Older reports have no podLifetimeMs.
        { figure: 'step Pod created → ended p50, s', better: '', values: pick((r) => (r.podLifetimeMs ? r.podLifetimeMs.p50 / 1000 : undefined)) },
        { figure: 'API requests/step', better: '↓', values: pick((r) => r.api.totalPerStep), digits: 2 },
        ...verbs.map((verb): Row => ({ figure: `  ${verb}/step`, better: '↓', values: pick((r) => r.api.perStep[verb] ?? 0), digits: 2 })),
        { figure: '▶ API writes/step (POST+PUT+PATCH+DELETE)', better: '↓', values: pick((r) => r.api.writesPerStep), digits: 2 },
        { figure: 'reconciles/step (own metric)', better: '↓', values: pick((r) => (r.controller?.pipelineRunReconciles !== undefined ? r.controller.pipelineRunReconciles / r.steps : undefined)), digits: 2 },
        { figure: 'CPU s / 1000 steps', better: '↓', values: pick((r) => r.cpuSecondsPer1000Steps), digits: 2 },
        { figure: 'API server+etcd CPU s / 1000 steps', better: '↓', values: pick((r) => r.controlPlaneCpuSecondsPer1000Steps), digits: 2 },
        { figure: 'peak RSS, MiB', better: '↓', values: pick((r) => r.peakRssMiB), digits: 0 },
      ],
    });
  }

  if (report.retention.length > 0) {
    const points = engines.map((e) => report.retention.filter((p) => p.engine === e));
    const rows: Row[] = [];
    for (let n = 0; n < Math.max(...points.map((p) => p.length)); n++) {
      const pick = (f: (p: RetentionPoint) => number | string) => points.map((p) => { const point = p[n]; return point ? f(point) : undefined; });
      rows.push(
        { figure: 'runs / pods kept', better: '', values: pick((p) => `${p.runsKept} / ${p.podsKept}`) },
        { figure: '  RSS after filling, MiB', better: '↓', values: pick((p) => p.rssMiBFilled), digits: 0 },
        { figure: '  peak RSS while filling, MiB', better: '↓', values: pick((p) => p.peakRssMiBWhileFilling), digits: 0 },
        { figure: '  RSS after a restart, MiB', better: '↓', values: pick((p) => p.rssMiBAfterRestart), digits: 0 },
        { figure: '  peak RSS in restart, MiB', better: '↓', values: pick((p) => p.peakRssMiBRestart), digits: 0 },
        { figure: '  restart until quiet, s', better: '↓', values: pick((p) => p.restartSeconds) },
      );
    }
    blocks.push({ title: 'memory with finished runs kept in the cluster', rows });
  }

  const lines: string[][] = [header];
  const separators = new Set<number>();
  for (const block of blocks) {
    separators.add(lines.length);
    lines.push([block.title]);
    for (const row of block.rows) {
      const cells = row.values.map((v) => format(v, row.digits));
      const ferry = row.values[engines.indexOf('ferry')];
      const argo = row.values[engines.indexOf('argo')];
      const ratio = both ? ratioOf(ferry, argo) : undefined;
      lines.push([`${row.figure}${row.better ? ` ${row.better}` : ''}`, ...cells, ...(both ? [ratio ?? '', standing(row.better, ferry, argo, row.digits)] : [])]);
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.filter((l) => l.length > 1).map((l) => (l[i] ?? '').length)));
  const render = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const rule = '-'.repeat(widths.reduce((a, b) => a + b + 2, -2));
  const out = [
    `Ferry benchmark ${report.date} · ${report.machine.cpus} × ${report.machine.cpuModel} · load at start ${report.machine.loadAverageAtStart.map((l) => l.toFixed(1)).join(' ')}`,
    `versions: ${Object.entries(report.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    rule,
  ];
  for (const [i, line] of lines.entries()) {
    if (separators.has(i)) out.push(rule, line[0]!);
    else out.push(render(line));
  }
  out.push(rule, '↑ more is better, ↓ less is better; handoff = dependency Pod Succeeded → dependent Pod created (bench watch clock)');
  if (both) out.push(...acceptance(report.results));
  if (report.retentionError) out.push(`retention curve stopped early: ${report.retentionError}`);
  return out.join('\n');
}

/** ahead / behind / even, as shown (a difference the printed digits hide is even). */
function standing(better: Row['better'], ferry: unknown, argo: unknown, digits = 1): string {
  if (!better || typeof ferry !== 'number' || typeof argo !== 'number' || !Number.isFinite(ferry) || !Number.isFinite(argo)) return '';
  if (ferry.toFixed(digits) === argo.toFixed(digits)) return 'even';
  return (better === '↑') === ferry > argo ? 'ahead' : 'BEHIND';
}

/** The issue's two bars, workload by workload: steps/s at least 2× Argo's, API writes/step at most Argo's. */
function acceptance(results: WorkloadResult[]): string[] {
  const lines: string[] = [];
  for (const workload of [...new Set(results.map((r) => r.workload))]) {
    const ferry = results.find((r) => r.workload === workload && r.engine === 'ferry');
    const argo = results.find((r) => r.workload === workload && r.engine === 'argo');
    if (!ferry || !argo) continue;
    const speed = ferry.stepsPerSecond / argo.stepsPerSecond;
    const writes = ferry.api.writesPerStep / argo.api.writesPerStep;
    const mark = (ok: boolean) => (ok ? 'met' : 'NOT MET');
    // Steady arrival offers a fixed load: a controller that keeps up completes exactly that.
    const speedBar = workload === 'steady' ? 'no bar: the offered load caps it' : `bar ≥ 2×: ${mark(speed >= 2)}`;
    const unfinished = [ferry, argo].filter((r) => r.unfinished > 0)
      .map((r) => `; ${r.engine} had not finished after ${r.wallSeconds.toFixed(0)} s (${r.steps} steps ended${r.controllerExited ? ', its controller exited' : ''}): its figures are over what it did`);
    lines.push(
      `${workload}: steps/s ${speed.toFixed(2)}× Argo's (${speedBar}); ` +
        `API writes/step ${ferry.api.writesPerStep.toFixed(2)} vs ${argo.api.writesPerStep.toFixed(2)} (bar ≤ Argo's: ${mark(writes <= 1)})${unfinished.join('')}`,
    );
  }
  return lines;
}

function ratioOf(a: number | string | undefined, b: number | string | undefined): string | undefined {
  if (typeof a !== 'number' || typeof b !== 'number' || !Number.isFinite(a) || !Number.isFinite(b)) return undefined;
  if (b === 0) return a === 0 ? '=' : '∞';
  return `${(a / b).toFixed(2)}×`;
}
