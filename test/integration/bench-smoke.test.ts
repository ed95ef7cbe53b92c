// A tiny run of Ferry's side of the benchmark (bench/run.ts), so that it cannot rot: its own
// etcd + kube-apiserver, KWOK and kube-scheduler (not the shared test API server: the scheduler
// and KWOK would take other tests' Pods), the real operator, 3 runs of the 5-step pipeline, a
// small fan-out, a small forEach and a small retention point. It asserts that the figures are sane, not fast.
// Argo's controller is never built here: only `npm run bench` builds it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseOptions, runBench, type BenchReport } from '../../bench/run.ts';
import { renderTable } from '../../bench/lib/report.ts';

describe('benchmark smoke (Ferry under KWOK)', () => {
  it('runs Ferry\'s workloads and reports sane figures', { timeout: 900_000 }, async () => {
    const options = parseOptions([
      '--engines=ferry', '--workloads=linear,fanout,foreach-6', '--runs=3', '--fanout=4',
      '--step-delay-ms=200', '--start-delay-ms=50', '--nodes=1', '--retain=10', '--retain-inflight=5', '--timeout-s=240',
    ]);
    const report: BenchReport = await runBench(options, (line) => process.stderr.write(`[bench-smoke] ${line}\n`));

    const linear = report.results.find((r) => r.workload === 'linear');
    assert.ok(linear, 'the linear workload ran');
    assert.equal(linear.succeeded, 3, 'all 3 runs Succeeded');
    assert.equal(linear.steps, 15, 'one Pod per step');
    assert.ok(linear.stepsPerSecond > 0 && Number.isFinite(linear.stepsPerSecond), `steps/s ${linear.stepsPerSecond}`);
    assert.equal(linear.handoff.watchMs.count, 12, 'a handoff for every step with a dependency');
    assert.ok(linear.handoff.watchMs.p50 >= 0 && linear.handoff.watchMs.p99 < 60_000, `handoffs ${JSON.stringify(linear.handoff.watchMs)}`);
    assert.ok(Number.isFinite(linear.api.totalPerStep) && linear.api.totalPerStep > 0, `requests/step ${linear.api.totalPerStep}`);
    // At least its Pod is created per step; a controller that polls would show hundreds.
    assert.ok(linear.api.writesPerStep >= 1 && linear.api.totalPerStep < 50, `per step: ${JSON.stringify(linear.api.perStep)}`);
    assert.ok((linear.api.perStep.POST ?? 0) >= 1, 'Pods are created with POST');
    assert.ok(linear.cpuSecondsPer1000Steps > 0 && Number.isFinite(linear.cpuSecondsPer1000Steps));
    assert.ok(linear.peakRssMiB > 10, `peak RSS ${linear.peakRssMiB} MiB`);

    const fanout = report.results.find((r) => r.workload === 'fanout');
    assert.equal(fanout?.succeeded, 1);
    assert.equal(fanout?.steps, 5);
    assert.equal(fanout?.handoff.watchMs.count, 1, 'the join');

    const forEach = report.results.find((r) => r.workload === 'foreach-6');
    assert.equal(forEach?.succeeded, 1, 'the forEach run Succeeded');
    assert.equal(forEach?.steps, 6, 'one Pod per item');
    assert.ok(Number.isFinite(forEach?.api.writesPerStep) && (forEach?.api.perStep.POST ?? 0) >= 1, `per step: ${JSON.stringify(forEach?.api.perStep)}`);

    const [point] = report.retention;
    assert.ok(point && point.runsKept >= 10, `retention ${JSON.stringify(point)}`);
    assert.ok(point.rssMiBAfterRestart > 10 && point.rssMiBFilled > 10);

    const table = renderTable(report);
    assert.match(table, /steps\/s at saturation/);
    assert.match(table, /API writes\/step/);
    assert.match(table, /forEach: 1 run, 1 step × 6 items/);
  });
});
