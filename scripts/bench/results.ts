// What one benchmark pass measures: the shapes bench.ts fills in and report.ts renders.

import type { SystemName } from '../../src/kinds/step.js';
import type { CpuUsage } from './proc.js';
import type { RequestCounts } from './prom.js';
import type { TrialKind } from './trials.js';

export interface ApiserverLoad {
  /** Requests served, "VERB resource" → count (all clients: controller, benchmark, kube-controller-manager). */
  requests: Record<string, number>;
  totalRequests: number;
  /** Watch events sent to watchers, and their bytes. */
  watchEvents: number;
  watchEventMiB: number;
}

export interface BaselineResult {
  n: number;
  concurrency: number;
  seconds: number;
  workspacesPerSecond: number;
  writesPerWorkspace: number;
  cpu: CpuUsage;
  apiserver: ApiserverLoad;
}

export interface MemoryReading {
  rssMiB: number;
  /** Highest RSS of the process so far (VmHWM). */
  peakRssMiB: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  /** V8 heap spaces: size / used, MiB. */
  spaces: Record<string, [number, number]>;
}

export interface ApiCost {
  /** Per workspace (or per change), per system. */
  perUnit: Record<SystemName, { reads: number; writes: number }>;
  totals: Record<SystemName, RequestCounts>;
  units: number;
  reconciles: Record<string, number>;
}

export interface ChurnResult {
  rate: number;
  seconds: number;
  issued: number;
  completed: number;
  timedOut: number;
  byKind: Record<string, number>;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  writeMsP50: number;
  cpu: CpuUsage;
  cost: ApiCost;
}

/** One cold start of N workspaces on a fresh control plane: a baseline loop or the controller. */
export interface ColdStartTrial {
  round: number;
  kind: TrialKind;
  seconds: number;
  workspacesPerSecond: number;
  /** CPU of the processes under test (control plane, client or controller, benchmark) per workspace. */
  cpuMsPerWorkspace: number;
}

export interface PassResult {
  name: 'kubernetes' | 'full';
  n: number;
  concurrency: number;
  external: boolean;
  createConfigMapsSeconds: number;
  baseline?: BaselineResult;
  /** The baseline plus the controller's per-workspace protocol requests (see runBaseline). */
  protocolBaseline?: BaselineResult;
  /** Every cold-start trial in run order; `baseline`, `protocolBaseline` and `coldStart` are the last round's. */
  coldStartTrials?: ColdStartTrial[];
  coldStart: {
    secondsFromSpawn: number;
    secondsFromSynced: number;
    cacheSyncSeconds: number;
    workspacesPerSecond: number;
    workspacesPerSecondFromSynced: number;
    /** Median controller throughput ÷ median baseline throughput over all rounds. */
    ratioToBaseline?: number;
    /** Lowest and highest ratio of controller to baseline within one round. */
    ratioRange?: [number, number];
    ratioToBaselineFromSynced?: number;
    halfReadySeconds: number;
    ninetyReadySeconds: number;
    secondsToIdle: number;
    /** Controller process CPU and V8 GC pause time, spawn → queue idle (from its /metrics). */
    controllerCpuSeconds: number;
    controllerGcSeconds: number;
    cpu: CpuUsage;
    apiserver: ApiserverLoad;
    /** Baseline CPU per workspace ÷ this pass's (our processes only): the ratio on a machine of our own. */
    cpuCostRatioToBaseline?: number;
    cost: ApiCost;
  };
  /** 3 s after the last workspace turned Ready. */
  memoryAfterColdStart: MemoryReading;
  /** After IDLE_SETTLE_MS without work: what a converged controller holds once V8 has shrunk its heap. */
  memoryConverged: MemoryReading;
  resync: {
    wallSeconds: number;
    controllerCpuSeconds: number;
    controllerGcSeconds: number;
    writes: Record<SystemName, number>;
    cpu: CpuUsage;
    cost: ApiCost;
  };
  churn?: ChurnResult;
  changeCost: Record<string, ApiCost & { p50Ms: number; p99Ms: number }>;
  /** A new controller process replays N converged workspaces (what a rollout or failover costs). */
  restart: {
    secondsFromSpawn: number;
    cacheSyncSeconds: number;
    controllerCpuSeconds: number;
    cost: ApiCost;
  };
  memoryAtEnd: MemoryReading;
  controllerErrors: string[];
  flyteDouble?: { reads: number; writes: number };
}
