import { describe, expect, it } from 'vitest';
import { parseMetrics, sumSeries } from '../../harness/metrics-text.js';

const TEXT = `# HELP workqueue_depth Current depth of workqueue
# TYPE workqueue_depth gauge
workqueue_depth{name="workspace",controller="workspace"} 2
# TYPE flyte_workspace_external_requests_total counter
flyte_workspace_external_requests_total{system="iam",access="write",outcome="success"} 3
flyte_workspace_external_requests_total{system="flyte",access="write",outcome="error"} 1
flyte_workspace_external_requests_total{system="iam",access="read",outcome="success"} 7
leader_election_master_status{name="a \\"quoted\\" lease\\\\x"} 1 1700000000000
process_start_time_seconds 1.7e9
le_bucket{le="+Inf"} +Inf
`;

describe('parseMetrics', () => {
  it('reads samples, label values with escapes, timestamps, exponents and +Inf', () => {
    const s = parseMetrics(TEXT, 42);
    expect(s.at).toBe(42);
    expect(s.types.get('workqueue_depth')).toBe('gauge');
    expect(s.get('workqueue_depth', { name: 'workspace' })).toBe(2);
    expect(s.sum('flyte_workspace_external_requests_total', { access: 'write' })).toBe(4);
    expect(s.find('leader_election_master_status')[0]?.labels.name).toBe('a "quoted" lease\\x');
    expect(s.get('process_start_time_seconds')).toBe(1.7e9);
    expect(s.get('le_bucket')).toBe(Number.POSITIVE_INFINITY);
    expect(s.get('absent')).toBeUndefined();
  });

  it('refuses an ambiguous get and a line that is not a sample', () => {
    expect(() => parseMetrics(TEXT).get('flyte_workspace_external_requests_total')).toThrow(/matches 3 samples/);
    expect(() => parseMetrics('workqueue_depth{name="x"}\n')).toThrow(/unparseable metrics line/);
  });

  it('sums series whose label text matches a pattern', () => {
    expect(sumSeries(TEXT, 'flyte_workspace_external_requests_total', /access="write"/)).toBe(4);
    expect(sumSeries(TEXT, 'flyte_workspace_external_requests_total', /system="iam"/)).toBe(10);
    expect(sumSeries(TEXT, 'flyte_workspace_external_requests_total')).toBe(11);
    expect(sumSeries(TEXT, 'absent')).toBe(0);
  });
});
